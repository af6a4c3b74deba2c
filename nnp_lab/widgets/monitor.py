"""``TrainingMonitor``: loss and error curves that update live.

Three sources, one widget:

* in-notebook training: pass ``monitor.callback`` as the trainer's ``progress``;
* a server job: ``TrainingMonitor(job_id=...)`` reads the job's progress events from the
  job store (same machine as the kernel) in a background thread — the widget holds only
  the id, so a reopened notebook reattaches to a running job;
* a finished run: ``TrainingMonitor(metrics="run/metrics.nc")``.

Curves are drawn with matplotlib into an image (no extra frontend extension needed).
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets

from nnp_lab.widgets.plots import figure_png

CURVES = (
    ("train_loss", "train loss", "1"),
    ("val_loss", "validation loss", "1"),
    ("val_energy_mae", "validation energy MAE", "meV/atom"),
    ("val_force_mae", "validation force MAE", "meV/Å"),
)


def render_curves(history: dict[str, list[float]], epochs: list[int], title: str = "") -> bytes:
    """PNG of the loss curves (left) and validation MAEs (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    for key, name, _unit in CURVES:
        values = history.get(key) or []
        if not values:
            continue
        ax = a if key.endswith("loss") else b
        ax.plot(epochs[: len(values)], values, label=name)
    for ax, ylabel in ((a, "loss"), (b, "MAE (meV/atom, meV/Å)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if ax.lines:
            ax.set_yscale("log")
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


class TrainingMonitor(widgets.VBox):
    """Live training curves; see the module docstring for the three sources."""

    def __init__(
        self,
        job_id: str | None = None,
        metrics: str | None = None,
        store: str | None = None,
        poll_s: float = 2.0,
    ):
        self.history: dict[str, list[float]] = {k: [] for k, _, _ in CURVES}
        self.epochs: list[int] = []
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML("waiting for the first epoch…")
        self.progress = widgets.FloatProgress(min=0.0, max=1.0, description="progress")
        super().__init__([self.status, self.progress, self.image])
        self.job_id = job_id
        self._stop = threading.Event()
        self._since = 0
        if metrics is not None:
            self.load_metrics(metrics)
        if job_id is not None:
            from nnp_lab.jobs.store import JobStore
            from nnp_lab.server import job_db_path

            self._store = JobStore(store or job_db_path())
            self.poll()  # what happened so far, at once
            self._thread = threading.Thread(target=self._follow, args=(poll_s,), daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ sources
    def callback(self, record: dict[str, Any]) -> None:
        """Trainer progress callback: one call per epoch."""
        self.epochs.append(int(record["epoch"]))
        for key in self.history:
            if key in record:
                self.history[key].append(float(record[key]))
        epochs = record.get("epochs")
        if epochs:
            self.progress.value = min(1.0, record["epoch"] / epochs)
        self.status.value = f"epoch {record['epoch']}" + (f" / {epochs}" if epochs else "")
        self.redraw()

    def load_metrics(self, path: str) -> None:
        """Show a finished run's history (``metrics.nc``)."""
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf") as ds:
            self.epochs = [int(e) for e in ds["epoch"].values]
            for key in self.history:
                if key in ds:
                    self.history[key] = [float(v) for v in ds[key].values]
        self.progress.value = 1.0
        self.status.value = f"{len(self.epochs)} epochs ({path})"
        self.redraw()

    def poll(self) -> str:
        """Read new events of the followed job; returns its status."""
        job = self._store.get(self.job_id)
        for event in self._store.events(self.job_id, since=self._since):
            self._since = event["id"]
            if event["step"] == "epoch":
                self.callback(event["payload"])
        self.progress.value = float(job["progress"] or 0.0)
        self.status.value = f"job {self.job_id}: {job['status']}" + (
            f" — {job['error']}" if job.get("error") else ""
        )
        return job["status"]

    def _follow(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            try:
                if self.poll() in ("completed", "failed", "cancelled", "interrupted"):
                    return
            except Exception as exc:  # show it; never die silently
                self.status.value = f"monitor stopped: {exc}"
                return

    def stop(self) -> None:
        """Stop following a job."""
        self._stop.set()

    def redraw(self) -> None:
        if self.epochs:
            self.image.value = render_curves(self.history, self.epochs)
