"""``CrystalGrowthView``: the growing film in 3D with a time slider, and its curves.

Takes a growth result (``xarray.Dataset`` from :func:`~nnp_lab.apps.crystal_growth.growth.run_growth`,
or the path of its ``growth.nc``); shows one snapshot at a time in a
:class:`StructureView` coloured by layer or coordination, beside coverage per layer,
island density and roughness with the current snapshot marked. Views only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from nnp_lab.errors import InputError
from nnp_lab.widgets.plots import figure_png
from nnp_lab.widgets.structure_view import StructureView

COLOURS = ("layer", "coordination")


def growth_curves_png(result: Any, snapshot: int) -> bytes:
    """PNG: coverage per layer vs time (left), island density and roughness (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    t = result.time.values
    theta = result.layer_coverage.values
    for z in range(1, theta.shape[1]):
        if theta[:, z].max() > 0:
            a.plot(t, theta[:, z], label=f"layer {z}")
    a.axvline(t[snapshot], color="k", lw=0.8)
    a.set_xlabel("time (s)")
    a.set_ylabel("coverage (ML)")
    a.legend(fontsize=6)
    cov = result.coverage.values
    b.plot(cov, result.island_density.values, "o-", label="island density (1/site)")
    b.set_xlabel("deposited (ML)")
    b.set_ylabel("island density")
    r = b.twinx()
    r.plot(cov, result.roughness.values, "s-", color="C3", label="roughness")
    r.set_ylabel("roughness (layers)")
    b.axvline(cov[snapshot], color="k", lw=0.8)
    fig.tight_layout()
    return figure_png(fig)


class CrystalGrowthView(widgets.VBox):
    """3D film + time slider + curves, from a growth result or its netCDF file."""

    def __init__(self, result: Any, color_by: str = "layer", min_layer: int = 0):
        import xarray as xr

        from nnp_lab.apps.crystal_growth.analysis import coordination
        from nnp_lab.apps.crystal_growth.growth import growth_frames
        from nnp_lab.apps.crystal_growth.lattice import Surface

        if isinstance(result, (str, Path)):
            with xr.open_dataset(result, engine="h5netcdf") as ds:
                result = ds.load()
        if color_by not in COLOURS:
            raise InputError(f"color_by must be one of {COLOURS}, got {color_by!r}")
        self.result = result
        self.frames = growth_frames(result, min_layer=min_layer)
        surface = Surface(
            result.attrs["metal"], result.attrs["facet"], result.attrs["lattice_constant"]
        )
        self.values = []
        for occ, atoms in zip(result.occupancy.values, self.frames):
            if color_by == "layer":
                self.values.append(atoms.get_tags().astype(float))
            else:
                c = coordination(occ, surface)
                sites = np.argwhere(occ)
                sites = sites[sites[:, 0] >= min_layer]
                self.values.append(c[tuple(sites.T)].astype(float))
        self.color_by = color_by
        n = len(self.frames)
        self.slider = widgets.IntSlider(
            value=n - 1, min=0, max=n - 1, description="snapshot", continuous_update=False
        )
        self.info = widgets.HTML()
        self.curves = widgets.Image(format="png", layout=widgets.Layout(width="45%"))
        # a flex box gives an nglview stage no width of its own: size it explicitly
        self.view_box = widgets.VBox(layout=widgets.Layout(width="55%", min_width="360px"))
        self.slider.observe(lambda _: self.show(self.slider.value), names="value")
        super().__init__([self.slider, self.info, widgets.HBox([self.view_box, self.curves])])
        self.show(n - 1)

    def show(self, snapshot: int) -> StructureView:
        """Show snapshot ``snapshot`` (also what the slider does)."""
        r = self.result.isel(snapshot=snapshot)
        self.info.value = (
            f"<b>{float(r.coverage):.2f} ML</b> after {float(r.time):.3g} s · "
            f"{int(r.islands)} islands · roughness {float(r.roughness):.2f} layers · "
            f"coloured by {self.color_by}"
        )
        self.structure = StructureView(
            self.frames[snapshot], color_by=self.values[snapshot], label=self.color_by
        )
        self.structure.view.layout = widgets.Layout(width="100%", height="420px")
        self.view_box.children = [self.structure]
        self.curves.value = growth_curves_png(self.result, snapshot)
        return self.structure
