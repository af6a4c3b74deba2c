"""``HBondExplorer``: move an H-bonded dimer with sliders, read off its energies.

Sliders for R_DA, θ_DHA and the acceptor's out-of-plane tilt φ move the dimer (nglview,
the H···A contact drawn as a distance line); the NNP committee's interaction energy (with
its spread) and GFN2-xTB's are shown for every position, the reference level's where the
scan holds that point (or on request: "compute reference" runs it, seconds for the water
dimer); a marker moves on the (R_DA, θ) energy map. Beside it, given ``liquid=``, the
liquid-water results of :mod:`nnp_lab.apps.hbond.liquid_analysis`: the O–O RDF against
experiment, the distribution of H-bonds per molecule and the H-bond population
correlations. Views only: numbers come from the library (:mod:`nnp_lab.apps.hbond`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from nnp_lab.errors import InputError
from nnp_lab.widgets.plots import figure_png
from nnp_lab.widgets.structure_view import StructureView


def map_png(emap: Any, r_da: float, theta: float, variable: str = "e_nnp") -> bytes:
    """PNG of one map variable over (R_DA, θ) with the current point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    da = emap[variable]
    if "phi" in da.dims:
        da = da.isel(phi=0)
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    mesh = ax.pcolormesh(
        da["theta"].values, da["r_da"].values, da.values, shading="nearest", cmap="viridis"
    )
    fig.colorbar(mesh, ax=ax, label=f"{variable} (kcal/mol)")
    ax.plot([theta], [r_da], "r*", markersize=14)
    ax.set_xlabel("θ D–H···A (°)")
    ax.set_ylabel("R D···A (Å)")
    ax.set_title(str(da.attrs.get("long_name", variable)), fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def liquid_png(res: Any) -> bytes:
    """PNG of a liquid analysis: g_OO(r) with the experimental peak, H-bonds per molecule,
    C(t) and S(t)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    expt = json.loads(res.attrs.get("experiment", "{}"))
    fig, ax = plt.subplots(1, 3, figsize=(10.5, 2.9))
    ax[0].plot(res["r"], res["g_oo"], label="nnp-lab")
    if expt:
        ax[0].plot(
            [expt["rdf_peak_r"]],
            [expt["rdf_peak_g"]],
            "k*",
            markersize=10,
            label="experiment (peak)",
        )
    ax[0].axhline(1.0, color="0.7", lw=0.8)
    ax[0].set_xlim(2.0, float(res["r"].max()))
    ax[0].set_xlabel("r O–O (Å)")
    ax[0].set_ylabel("g(r)")
    ax[0].legend(fontsize=7)
    ax[1].bar(res["n_hbonds"], res["hbond_count_fraction"])
    ax[1].set_xlabel("H-bonds per molecule")
    ax[1].set_ylabel("fraction")
    ax[1].set_title(f"mean {res.attrs['hbonds_per_molecule_mean']:.2f}", fontsize=8)
    ax[2].plot(res["lag"], res["c_intermittent"], label="C(t) intermittent")
    ax[2].plot(res["lag"], res["s_continuous"], label="S(t) continuous")
    ax[2].set_xlabel("t (ps)")
    ax[2].set_title(
        f"τ_S = {res.attrs['tau_continuous_ps']:.2f} ps, τ_C(1/e) = "
        f"{res.attrs['tau_intermittent_ps']:.2f} ps",
        fontsize=8,
    )
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def _liquid_html(res: Any) -> str:
    import json

    from nnp_lab.apps.hbond.liquid_analysis import summary

    s = summary(res)
    expt = json.loads(res.attrs.get("experiment", "{}"))
    return (
        f"<b>Liquid water</b>, {s['n_molecules']} molecules, "
        f"{s['mean_temperature_K']:.0f} K: g_OO peak <b>{s['rdf_peak_r']:.2f} Å</b> "
        f"(height {s['rdf_peak_g']:.2f}; experiment {expt.get('rdf_peak_r', '—')} Å, "
        f"{expt.get('rdf_peak_g', '—')}), coordination {s['coordination']:.2f}, "
        f"<b>{s['hbonds_per_molecule_mean']:.2f}</b> H-bonds per molecule, "
        f"lifetimes τ_S {s['tau_continuous_ps']:.2f} ps, τ_C {s['tau_intermittent_ps']:.2f} ps"
    )


class HBondExplorer(widgets.VBox):
    """Dimer sliders + 3D view + energies + energy-map marker.

    Args:
        scan: a dimer scan (``xarray.Dataset`` or its ``.nc`` path) from
            :mod:`nnp_lab.apps.hbond.dimer_data`.
        model: the H-bond committee (:class:`~nnp_lab.models.committee.Committee` or path).
        emap: an energy map from :func:`~nnp_lab.apps.hbond.maps.energy_map`; computed
            from the scan and model when not given.
        liquid: a liquid analysis (``xarray.Dataset`` or ``.nc`` path) from
            :func:`~nnp_lab.apps.hbond.liquid_analysis.analyse`, shown beside the dimer.
    """

    def __init__(self, scan: Any, model: Any, emap: Any = None, liquid: Any = None):
        from nnp_lab.apps.hbond.dimer_data import load_scan
        from nnp_lab.apps.hbond.dimers import get_dimer
        from nnp_lab.apps.hbond.maps import energy_map, equilibrium_of, reference_map
        from nnp_lab.models.committee import Committee

        if isinstance(scan, (str, Path)):
            scan = load_scan(scan)
        if isinstance(model, (str, Path)):
            model = Committee.load(model)
        if not isinstance(model, Committee):
            raise InputError("model must be an H-bond Committee or the path of one")
        self.scan, self.model = scan, model
        self.spec = get_dimer(str(scan.attrs["dimer"]))
        self.eq = equilibrium_of(scan)
        self.reference = reference_map(scan)
        self.emap = emap if emap is not None else energy_map(scan, model)
        r = self.emap["r_da"].values
        t = self.emap["theta"].values
        opts = {"continuous_update": False, "readout_format": ".2f"}
        self.r_slider = widgets.FloatSlider(
            value=float(np.clip(self.eq.r_da, r.min(), r.max())),
            min=float(r.min()),
            max=float(r.max()),
            step=0.05,
            description="R D···A (Å)",
            **opts,
        )
        self.theta_slider = widgets.FloatSlider(
            value=float(np.clip(self.eq.theta, t.min(), t.max())),
            min=float(t.min()),
            max=180.0,
            step=2.5,
            description="θ D–H···A (°)",
            **opts,
        )
        self.phi_slider = widgets.FloatSlider(
            value=float(self.eq.phi),
            min=-90.0,
            max=90.0,
            step=5.0,
            description="φ tilt (°)",
            **opts,
        )
        self.energies = widgets.HTML()
        self.ref_button = widgets.Button(description="compute reference")
        self.ref_button.on_click(lambda _: self.compute_reference())
        self.map_image = widgets.Image(format="png", layout=widgets.Layout(width="40%"))
        self.view_box = widgets.VBox(layout=widgets.Layout(width="60%", min_width="360px"))
        self.reference_energy: float | None = None
        self.structure: StructureView | None = None
        for s in (self.r_slider, self.theta_slider, self.phi_slider):
            s.observe(lambda _: self.update(), names="value")
        controls = widgets.VBox(
            [
                self.r_slider,
                self.theta_slider,
                self.phi_slider,
                widgets.HBox([self.energies, self.ref_button]),
            ]
        )
        rows: list[Any] = [controls, widgets.HBox([self.view_box, self.map_image])]
        self.liquid = None
        if liquid is not None:
            import xarray as xr

            if isinstance(liquid, (str, Path)):
                with xr.open_dataset(liquid) as ds:
                    liquid = ds.load()
            if "g_oo" not in liquid:
                raise InputError("liquid must be a liquid analysis (liquid_analysis.analyse)")
            self.liquid = liquid
            self.liquid_summary = widgets.HTML(_liquid_html(liquid))
            self.liquid_image = widgets.Image(value=liquid_png(liquid), format="png")
            rows.append(widgets.VBox([self.liquid_summary, self.liquid_image]))
        super().__init__(rows)
        self.update()

    @property
    def coords(self) -> Any:
        """The H-bond coordinates the sliders set (the others at equilibrium)."""
        return replace(
            self.eq,
            r_da=float(self.r_slider.value),
            theta=float(self.theta_slider.value),
            phi=float(self.phi_slider.value),
        )

    def _reference_on_grid(self) -> float | None:
        if self.reference is None or not np.isclose(self.phi_slider.value, self.eq.phi, atol=1e-6):
            return None
        r, t = self.r_slider.value, self.theta_slider.value
        rs, ts = self.reference["r_da"].values, self.reference["theta"].values
        i, j = (
            np.nonzero(np.isclose(rs, r, atol=1e-3))[0],
            np.nonzero(np.isclose(ts, t, atol=1e-3))[0],
        )
        if len(i) and len(j):
            v = float(self.reference.values[i[0], j[0]])
            return v if np.isfinite(v) else None
        return None

    def update(self) -> None:
        """Rebuild the dimer at the sliders' coordinates and refresh every readout."""
        from nnp_lab.apps.hbond.dimer_data import xtb_interaction
        from nnp_lab.apps.hbond.dimers import MONOMERS, build_dimer, is_clash
        from nnp_lab.apps.hbond.model import interaction_energies

        c = self.coords
        self.atoms = build_dimer(self.spec, c)
        self.reference_energy = self._reference_on_grid()
        if is_clash(self.atoms):
            self.energies.value = "<b>monomers overlap</b>: no energies at this geometry"
            self.prediction = None
        else:
            self.prediction = interaction_energies(self.model, [self.atoms])
            xtb = float(xtb_interaction([self.atoms])[0])
            ref = (
                f"{self.reference_energy:.2f}"
                if self.reference_energy is not None
                else "— (not on the reference grid)"
            )
            self.energies.value = (
                f"<b>{self.spec.name}</b> R = {c.r_da:.2f} Å, θ = {c.theta:.1f}°, "
                f"φ = {c.phi:.0f}°<br>"
                f"NNP <b>{self.prediction['mean'][0]:.2f}</b> ± {self.prediction['std'][0]:.2f} · "
                f"GFN2-xTB {xtb:.2f} · {self.scan.attrs['reference_method']} {ref} "
                f"(kcal/mol)"
            )
        h = MONOMERS[self.spec.donor].hydrogen
        a = self.spec.n_donor + MONOMERS[self.spec.acceptor].acceptor
        if self.structure is None:
            self.structure = StructureView(self.atoms)
            self.structure.view.layout = widgets.Layout(width="100%", height="380px")
            self.structure.view.add_representation(
                "distance", atomPair=[[h, a]], color="red", labelColor="black"
            )
            self.view_box.children = [self.structure]
        else:
            self.structure.view.set_coordinates({0: self.atoms.positions})
        self.map_image.value = map_png(self.emap, c.r_da, c.theta)

    def compute_reference(self) -> float:
        """Run the reference level at the current geometry (seconds to minutes)."""
        from nnp_lab.apps.hbond.reference_check import cp_interaction

        self.ref_button.description = "computing…"
        try:
            e = cp_interaction(self.atoms, **self._reference_settings())
        finally:
            self.ref_button.description = "compute reference"
        self.reference_energy = e
        self.energies.value += f"<br>reference now: <b>{e:.2f}</b> kcal/mol"
        return e

    def _reference_settings(self) -> dict[str, Any]:
        import json

        s = json.loads(self.scan.attrs["reference_settings"])
        return {
            "method": s["method"],
            "basis": s["basis"],
            "density_fit": bool(s.get("density_fit", False)),
        }
