"""``KIEExplorer``: kinetic isotope effects against temperature, with the ring polymers in 3D.

A temperature slider moves along a KIE table (:func:`nnp_lab.apps.kie.eckart.eckart_kie`,
:func:`nnp_lab.apps.kie.malonaldehyde.malonaldehyde_kie` or any dataset with ``temperature`` and ``kie_*`` / ``k_*`` variables): the plot shows
KIE(T) of every route present (exact, RPMD, quantum TST by mass integration, P = 1,
classical) with the selected temperature marked, and the text lists both isotopes' rates.
Given PIMD runs (:func:`nnp_lab.dynamics.pimd.run_pimd` results with bead positions), the
nglview panel shows their ring polymers side by side — every atom's beads as a translucent
cloud, e.g. H and D — for the run nearest the slider's temperature. Views only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from ase import Atoms

from nnp_lab.errors import InputError
from nnp_lab.widgets.plots import figure_png
from nnp_lab.widgets.structure_view import StructureView

ROUTES = {
    "kie_exact": ("exact quantum", "k-"),
    "kie_rpmd": ("RPMD", "C0o-"),
    "kie_qtst_ti": ("quantum TST (mass TI)", "C2s--"),
    "kie_tst": ("centroid TST (umbrella PMF)", "C3d--"),
    "kie_rpmd_p1": ("RPMD with P = 1", "C1^:"),
    "kie_classical": ("classical", "0.5"),
}


def _open(data: Any) -> Any:
    import xarray as xr

    if isinstance(data, (str, Path)):
        with xr.open_dataset(data) as ds:
            return ds.load()
    return data


def kie_png(table: Any, temperature: float) -> bytes:
    """PNG of KIE(T) for every route in ``table`` (log scale) with ``temperature`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table["temperature"].values
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    for name, (label, style) in ROUTES.items():
        if name in table:
            ax.plot(t, table[name].values, style, label=label, markersize=4)
    ax.axvline(temperature, color="r", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("T (K)")
    ax.set_ylabel("KIE k(light) / k(heavy)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def ring_atoms(runs: dict[str, Any], frame: int = -1, gap: float = 3.0) -> tuple[Atoms, list]:
    """All beads of the runs' ``frame`` as one ``Atoms`` (run k shifted along x beside run
    k − 1), and per run its (label, first atom index, count)."""
    parts, spans, offset, start = [], [], 0.0, 0
    for label, ds in runs.items():
        if "bead_positions" not in ds:
            raise InputError(f"run {label!r} has no bead positions (run_pimd positions_every)")
        q = ds["bead_positions"].values[frame].astype(float)  # (P, N, 3)
        p, n, _ = q.shape
        pos = q.reshape(-1, 3) - q.reshape(-1, 3).min(0)
        pos[:, 0] += offset
        numbers = np.tile(ds["numbers"].values, p)
        parts.append(Atoms(numbers=numbers, positions=pos))
        spans.append((label, start, p * n))
        start += p * n
        offset = float(pos[:, 0].max()) + gap
    out = parts[0]
    for a in parts[1:]:
        out = out + a
    return out, spans


class KIEExplorer(widgets.VBox):
    """KIE(T) with a temperature slider and the ring polymers of PIMD runs in 3D.

    Args:
        table: KIE table (Dataset or netCDF path), dims ``temperature`` (and ``isotope``).
        runs: PIMD results to show: ``{label: run}`` (one temperature) or
            ``{temperature: {label: run}}``; runs are Datasets or netCDF paths.
    """

    def __init__(self, table: Any, runs: dict | None = None):
        self.table = _open(table)
        if "temperature" not in self.table.dims or not any(k in self.table for k in ROUTES):
            raise InputError("table needs a temperature dim and kie_* variables (eckart_kie)")
        temps = [float(t) for t in self.table["temperature"].values]
        self.slider = widgets.SelectionSlider(
            options=[(f"{t:g} K", t) for t in sorted(temps)],
            value=sorted(temps)[len(temps) // 2],
            description="T",
            continuous_update=False,
        )
        self.text = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="45%"))
        self.runs = self._runs(runs)
        self.view_box = widgets.VBox(layout=widgets.Layout(width="55%", min_width="360px"))
        self.view: Any = None
        self._shown: float | None = None
        self.slider.observe(lambda _: self.update(), names="value")
        super().__init__([self.slider, self.text, widgets.HBox([self.plot, self.view_box])])
        self.update()

    @staticmethod
    def _runs(runs: dict | None) -> dict[float, dict[str, Any]]:
        if not runs:
            return {}
        first = next(iter(runs.values()))
        if isinstance(first, dict):
            return {float(t): {k: _open(v) for k, v in r.items()} for t, r in runs.items()}
        opened = {k: _open(v) for k, v in runs.items()}
        t = json.loads(next(iter(opened.values())).attrs["settings"])["temperature_K"]
        return {float(t): opened}

    @property
    def temperature(self) -> float:
        return float(self.slider.value)

    def update(self) -> None:
        """Redraw the plot and text for the slider's temperature; swap the 3D runs if needed."""
        t = self.temperature
        row = self.table.sel(temperature=t)
        lines = [f"<b>T = {t:g} K</b>"]
        for name, (label, _) in ROUTES.items():
            if name in row:
                lines.append(f"KIE {label}: <b>{float(row[name]):.3g}</b>")
        if "k_rpmd" in row and "isotope" in row.dims:
            for iso in row["isotope"].values:
                r = row.sel(isotope=iso)
                lines.append(
                    f"k({iso}) RPMD {float(r['k_rpmd']):.3e}"
                    + (f", exact {float(r['k_exact']):.3e}" if "k_exact" in r else "")
                    + f" {row['k_rpmd'].attrs.get('units', 'Å/fs')}"
                )
        self.text.value = "<br>".join(lines)
        self.plot.value = kie_png(self.table, t)
        if self.runs:
            nearest = min(self.runs, key=lambda x: abs(x - t))
            if nearest != self._shown:
                self._show(nearest)

    def _show(self, temperature: float) -> None:
        atoms, spans = ring_atoms(self.runs[temperature])
        self.ring_atoms = atoms
        self.structure = StructureView(atoms)
        self.view = self.structure.view
        self.view.layout = widgets.Layout(width="100%", height="380px")
        self.view.clear_representations()
        self.view.add_representation("spacefill", radiusScale=0.35, opacity=0.4)
        self.spans = spans
        caption = ", ".join(f"{label} ({n} beads·atoms)" for label, _, n in spans)
        self.view_box.children = [
            widgets.HTML(f"ring polymers at {temperature:g} K, left to right: {caption}"),
            self.structure,
        ]
        self._shown = temperature
