"""Panel dashboards of a training run or an active-learning run, as a standalone app.

    nnp-lab dashboard run/                 # a training folder (metrics.nc)
    nnp-lab dashboard al_run/ --port 5006  # an active-learning workdir (al_log.nc)

Served with ``panel serve`` machinery on 127.0.0.1 only; the page re-reads the files on
a timer, so it follows a run that is still going. Views only: the numbers come from the
files the library writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnp_lab.errors import InputError
from nnp_lab.widgets.plots import learning_curve

REFRESH_MS = 5000


def _open(path: Path) -> Any:
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def _figure(width: float = 7.0, height: float = 3.2) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, 2)


def training_figure(metrics: Path) -> Any:
    """Losses and validation MAEs over epochs (a matplotlib Figure)."""
    h = _open(metrics)
    fig, (a, b) = _figure()
    for key in ("train_loss", "val_loss"):
        if key in h:
            a.plot(h["epoch"], h[key], label=key)
    for key in ("val_energy_mae", "val_force_mae"):
        if key in h:
            b.plot(h["epoch"], h[key], label=f"{key} ({h[key].attrs.get('units', '')})")
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"{metrics}  ({h.sizes['epoch']} epochs)", fontsize=9)
    fig.tight_layout()
    return fig


def active_learning_figure(log_path: Path, iteration: int | None = None) -> Any:
    """Labels vs errors, and the uncertainty histogram of one iteration."""
    log = _open(log_path)
    fig, (a, b) = _figure()
    learning_curve(a, log)
    it = int(log.iteration.values[-1]) if iteration is None else int(iteration)
    row = log.sel(iteration=it)
    b.bar(np.log10(log["uncertainty_bin"].values), row["uncertainty_hist"].values, width=0.15)
    thr = log.attrs.get("threshold")
    if thr:
        b.axvline(np.log10(float(thr)), color="r")
    b.set_xlabel("log10 calibrated max force spread (eV/Å)")
    b.set_title(
        f"iteration {it}: {int(row['candidates'])} candidates, {int(row['selected'])} selected",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def resolve(path: str | Path) -> tuple[str, Path]:
    """``("active_learning", al_log.nc)`` or ``("training", metrics.nc)`` for ``path``."""
    path = Path(path)
    if path.is_dir() and (path / "al_log.nc").exists():
        return "active_learning", path / "al_log.nc"
    metrics = path / "metrics.nc" if path.is_dir() else path
    if metrics.suffix != ".nc" or not metrics.exists():
        raise InputError(
            f"{path}: give a training folder (with metrics.nc), a metrics.nc file, or an "
            "active-learning workdir (with al_log.nc)"
        )
    return "training", metrics


def dashboard(path: str | Path) -> Any:
    """The Panel layout for a training folder/metrics file or an active-learning workdir."""
    import panel as pn

    kind, source = resolve(path)
    if kind == "active_learning":
        log_path = source
        its = [int(i) for i in _open(log_path).iteration.values]
        slider = pn.widgets.IntSlider(
            name="iteration", start=its[0], end=max(its[-1], its[0] + 1), value=its[-1]
        )
        plot = pn.pane.Matplotlib(active_learning_figure(log_path), dpi=90, tight=True)

        def update(*_: Any) -> None:
            current = [int(i) for i in _open(log_path).iteration.values]
            slider.end = max(current[-1], current[0] + 1)
            plot.object = active_learning_figure(log_path, min(slider.value, current[-1]))

        slider.param.watch(update, "value")
        pn.state.add_periodic_callback(update, period=REFRESH_MS)
        table = pn.pane.DataFrame(
            _open(log_path)[
                [
                    "n_labels",
                    "n_failed",
                    "candidates",
                    "selected",
                    "val_force_rmse",
                    "test_force_rmse",
                    "spearman_rho",
                ]
            ].to_dataframe(),
            sizing_mode="stretch_width",
        )
        return pn.Column(f"# Active learning: `{path}`", slider, plot, table)
    metrics = source
    plot = pn.pane.Matplotlib(training_figure(metrics), dpi=90, tight=True)
    pn.state.add_periodic_callback(
        lambda: setattr(plot, "object", training_figure(metrics)), period=REFRESH_MS
    )
    return pn.Column(f"# Training: `{metrics}`", plot)


def serve(path: str | Path, port: int = 5006, show: bool = False) -> None:
    """Serve the dashboard of ``path`` on http://127.0.0.1:<port>/ (blocks)."""
    import panel as pn

    resolve(path)  # fail early, with a clear message, before the server starts
    pn.serve(
        {"/": lambda: dashboard(path)},
        address="127.0.0.1",
        port=port,
        show=show,
        allow_websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"],
        title="nnp-lab dashboard",
    )
