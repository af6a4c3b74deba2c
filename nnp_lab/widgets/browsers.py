"""``DatasetBrowser`` and ``ActiveLearningDashboard``: tables and plots linked to a 3D view.

Both take library objects (a :class:`~nnp_lab.Dataset`, or an active-learning workdir)
and show them; clicking a structure shows it in a :class:`StructureView`. They compute
statistics only from what the objects hold — no science here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import InputError
from nnp_lab.widgets.plots import figure_png, learning_curve
from nnp_lab.widgets.structure_view import StructureView


def structure_table(data: Dataset) -> list[dict[str, Any]]:
    """One row per structure: index, source, status, atoms, energy/atom, max |F|."""
    f = np.linalg.norm(np.asarray(data.xr["forces"].values), axis=1)
    ptr = data.ptr
    rows = []
    for k in range(len(data)):
        fk = f[ptr[k] : ptr[k + 1]]
        rows.append(
            {
                "index": k,
                "source": str(data.xr["source"].values[k]),
                "status": str(data.xr["status"].values[k]),
                "atoms": int(data.n_atoms[k]),
                "energy_per_atom": float(data.energy[k] / data.n_atoms[k]),
                "max_force": float(np.nanmax(fk)) if np.isfinite(fk).any() else float("nan"),
            }
        )
    return rows


class DatasetBrowser(widgets.VBox):
    """Table of structures with energy/force statistics, a filter, and a 3D view."""

    def __init__(self, data: Dataset | str):
        self.data = Dataset.load(data) if isinstance(data, (str, Path)) else data
        if len(self.data) == 0:
            raise InputError("the dataset is empty")
        self.rows = structure_table(self.data)
        self.filter = widgets.Text(description="filter", placeholder="source or status contains…")
        self.table = widgets.Select(options=[], rows=12, layout=widgets.Layout(width="100%"))
        self.summary = widgets.HTML(self._summary_html())
        self.view_box = widgets.VBox()
        self.filter.observe(lambda _: self._fill(), names="value")
        self.table.observe(self._on_pick, names="value")
        self._fill()
        super().__init__([self.summary, self.filter, self.table, self.view_box])

    def _summary_html(self) -> str:
        s = self.data.summary()
        return (
            f"<b>{s['structures']} structures</b>, {s['atoms']} atoms, species {s['species']}, "
            f"{s['labelled']} labelled, {s['failed']} failed; methods {s['methods']}"
        )

    def _fill(self) -> None:
        text = self.filter.value.lower()
        opts = []
        for r in self.rows:
            if text and text not in r["source"].lower() and text not in r["status"].lower():
                continue
            label = (
                f"{r['index']:>5}  {r['status']:<10} {r['atoms']:>5} atoms  "
                f"E/N {r['energy_per_atom']:+.4f} eV  max|F| {r['max_force']:.3f} eV/Å  {r['source']}"
            )
            opts.append((label, r["index"]))
        self.table.options = opts

    def _on_pick(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            self.show(int(change["new"]))

    def show(self, index: int) -> StructureView:
        """Show structure ``index`` in 3D (coloured by |force| when labelled)."""
        atoms = self.data.atoms(index)
        lo, hi = self.data.ptr[index], self.data.ptr[index + 1]
        f = np.linalg.norm(np.asarray(self.data.xr["forces"].values[lo:hi]), axis=1)
        view = StructureView(
            atoms, color_by=f if np.isfinite(f).all() else None, label="|F| (eV/Å)"
        )
        self.view_box.children = [view]
        return view


class ActiveLearningDashboard(widgets.VBox):
    """Labels vs error, uncertainty histograms by iteration, and the selected structures
    of an iteration (click one to see it in 3D) — from an active-learning workdir."""

    def __init__(self, workdir: str | Path):
        import xarray as xr

        self.workdir = Path(workdir)
        path = self.workdir / "al_log.nc"
        if not path.exists():
            raise InputError(f"{path} does not exist: not an active-learning workdir (yet)")
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            self.record = ds.load()
        its = [int(i) for i in self.record.iteration.values]
        self.curves = widgets.Image(format="png", value=self._curves_png())
        self.iteration = widgets.SelectionSlider(
            options=its, value=its[-1], description="iteration"
        )
        self.hist = widgets.Image(format="png")
        self.selected = widgets.Select(options=[], rows=6, description="selected")
        self.view_box = widgets.VBox()
        self.iteration.observe(lambda _: self._on_iteration(), names="value")
        self.selected.observe(self._on_pick, names="value")
        self._on_iteration()
        super().__init__([self.curves, self.iteration, self.hist, self.selected, self.view_box])

    def _curves_png(self) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        log = self.record
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
        learning_curve(a, log)
        b.bar(log.iteration - 0.2, log["candidates"], width=0.4, label="candidates")
        b.bar(log.iteration + 0.2, log["selected"], width=0.4, label="selected")
        b.set_xlabel("iteration")
        b.legend(fontsize=7)
        fig.tight_layout()
        return figure_png(fig)

    def _hist_png(self, it: int) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        row = self.record.sel(iteration=it)
        centres = self.record["uncertainty_bin"].values
        fig, ax = plt.subplots(figsize=(5, 2.5))
        ax.bar(np.log10(centres), row["uncertainty_hist"].values, width=0.15)
        thr = self.record.attrs.get("threshold")
        if thr:
            ax.axvline(np.log10(float(thr)), color="r", label="threshold")
            ax.legend(fontsize=7)
        ax.set_xlabel("log10 calibrated max force spread (eV/Å)")
        ax.set_ylabel("frames")
        ax.set_title(f"iteration {it}", fontsize=9)
        fig.tight_layout()
        return figure_png(fig)

    def _on_iteration(self) -> None:
        it = int(self.iteration.value)
        self.hist.value = self._hist_png(it)
        labelled = self.workdir / f"iter_{it:03d}" / "labelled.nc"
        self._labelled = Dataset.load(labelled) if labelled.exists() else None
        if self._labelled is None:
            self.selected.options = []
            return
        u = self._labelled.xr.get("info_uncertainty")
        self.selected.options = [
            (
                f"{k}: {self._labelled.xr['status'].values[k]}"
                + (f", spread {float(u.values[k]):.3f} eV/Å" if u is not None else ""),
                k,
            )
            for k in range(len(self._labelled))
        ]

    def _on_pick(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and self._labelled is not None:
            self.view_box.children = [StructureView(self._labelled.atoms(int(change["new"])))]
