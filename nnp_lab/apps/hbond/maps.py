"""Interaction-energy maps over H-bond coordinates as xarray, for every level at once.

:func:`energy_map` evaluates a grid over (R_DA, θ_DHA[, φ]) — the other rigid-body
coordinates held at the dimer's equilibrium — with the NNP committee (mean and spread)
and GFN2-xTB; where the dimer's scan holds reference points on the same grid (the water
dimer's ``map`` family) the reference map and the difference maps are added.
:func:`directional_cut` is the directional character made explicit: energy against the
D–H···A angle at a fixed distance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import xarray as xr

from nnp_lab.apps.hbond.dimer_data import xtb_interaction
from nnp_lab.apps.hbond.dimers import HBondCoords, build_dimer, get_dimer, is_clash
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee


def equilibrium_of(scan: xr.Dataset) -> HBondCoords:
    """The equilibrium coordinates recorded in a dimer scan."""
    return HBondCoords(**json.loads(scan.attrs["equilibrium"]))


def reference_map(scan: xr.Dataset) -> xr.DataArray | None:
    """The scan's ``map`` family as a (r_da, theta) grid of reference energies, or None."""
    sel = scan["family"].values == "map"
    if not sel.any():
        return None
    r = np.round(scan["r_da"].values[sel], 4)
    t = np.round(scan["theta"].values[sel], 4)
    e = np.where(scan["status"].values[sel] == "ok", scan["e_int"].values[sel], np.nan)
    rs, ts = np.unique(r), np.unique(t)
    grid = np.full((len(rs), len(ts)), np.nan)
    grid[np.searchsorted(rs, r), np.searchsorted(ts, t)] = e
    return xr.DataArray(
        grid,
        dims=("r_da", "theta"),
        coords={"r_da": rs, "theta": ts},
        attrs={"units": "kcal/mol", "long_name": scan.attrs["reference_method"]},
    )


def energy_map(
    scan: xr.Dataset,
    model: Committee | None = None,
    r_da: Sequence[float] | None = None,
    theta: Sequence[float] | None = None,
    phi: Sequence[float] | None = None,
    xtb: bool = True,
) -> xr.Dataset:
    """Energy maps (kcal/mol) of the scan's dimer over ``r_da`` × ``theta`` [× ``phi``].

    Variables: ``e_nnp`` and ``e_nnp_std`` (committee mean and spread) when a model is
    given, ``e_xtb``, and — where the scan holds reference points on this grid —
    ``e_ref``, ``d_nnp`` = e_nnp − e_ref and ``d_xtb`` = e_xtb − e_ref. Geometries whose
    monomers clash are NaN. Defaults: the reference grid if the scan has one, else
    R_DA 2.5–4.5 Å and θ 100–180°.
    """
    from nnp_lab.apps.hbond.model import interaction_energies

    spec = get_dimer(str(scan.attrs["dimer"]))
    eq = equilibrium_of(scan)
    ref = reference_map(scan)
    if r_da is None:
        r_da = ref["r_da"].values if ref is not None else np.linspace(2.5, 4.5, 11)
    if theta is None:
        theta = ref["theta"].values if ref is not None else np.linspace(100, 180, 9)
    dims = ["r_da", "theta"] + (["phi"] if phi is not None else [])
    axes = [np.asarray(r_da, float), np.asarray(theta, float)]
    if phi is not None:
        axes.append(np.asarray(phi, float))
    if any(len(a) == 0 for a in axes):
        raise InputError("every map axis needs at least one value")
    shape = tuple(len(a) for a in axes)
    structures, where = [], []
    for idx in np.ndindex(*shape):
        c = replace(eq, r_da=float(axes[0][idx[0]]), theta=float(axes[1][idx[1]]))
        if phi is not None:
            c = replace(c, phi=float(axes[2][idx[2]]))
        d = build_dimer(spec, c)
        if not is_clash(d):
            structures.append(d)
            where.append(idx)
    coords = dict(zip(dims, axes))
    out = xr.Dataset(coords=coords)

    def put(values: np.ndarray, name: str, long_name: str) -> None:
        grid = np.full(shape, np.nan)
        for v, idx in zip(values, where):
            grid[idx] = v
        out[name] = (dims, grid, {"units": "kcal/mol", "long_name": long_name})

    if model is not None and structures:
        pred = interaction_energies(model, structures)
        put(pred["mean"], "e_nnp", f"nnp-lab committee mean ({len(pred['members'])} members)")
        put(pred["std"], "e_nnp_std", "committee spread (std over members)")
    if xtb and structures:
        put(xtb_interaction(structures), "e_xtb", "GFN2-xTB")
    if ref is not None:
        aligned = ref.reindex(r_da=np.round(axes[0], 4), theta=np.round(axes[1], 4))
        if np.isfinite(aligned.values).any():
            e_ref = aligned.values if phi is None else aligned.values[..., None]
            out["e_ref"] = (dims, np.broadcast_to(e_ref, shape).copy(), dict(ref.attrs))
            if phi is not None:  # the reference grid is at the equilibrium φ only
                out["e_ref"] = out["e_ref"].where(np.isclose(out["phi"], eq.phi, atol=1e-3))
            for name in ("e_nnp", "e_xtb"):
                if name in out:
                    diff = out[name] - out["e_ref"]
                    diff.attrs = {"units": "kcal/mol", "long_name": f"{name} − e_ref"}
                    out["d_" + name[2:]] = diff
    out.attrs.update(
        dimer=spec.name,
        fixed=json.dumps({k: v for k, v in eq.as_dict().items() if k not in dims}),
        reference_method=scan.attrs["reference_method"],
    )
    return out


def directional_cut(emap: xr.Dataset, r_da: float) -> xr.Dataset:
    """Energy against θ_DHA at the grid distance nearest ``r_da`` (every level of the map)."""
    return emap.sel(r_da=r_da, method="nearest")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m nnp_lab.apps.hbond.maps --dimer water_dimer --out map.nc``"""
    import argparse

    from nnp_lab._atomic import atomic_path
    from nnp_lab.apps.hbond.dimer_data import load_scan
    from nnp_lab.apps.hbond.train import RESOURCES

    ap = argparse.ArgumentParser(description="H-bond energy maps (reference, NNP, GFN2-xTB)")
    ap.add_argument("--dimer", default="water_dimer")
    ap.add_argument("--scans", default=str(RESOURCES), help="folder of <dimer>.nc scans")
    ap.add_argument("--model", default=str(RESOURCES / "hbond_committee.pt"))
    ap.add_argument("--phi", type=float, nargs="*", default=None, help="φ values (degrees)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from pathlib import Path

    scan = load_scan(Path(args.scans) / f"{args.dimer}.nc")
    emap = energy_map(scan, Committee.load(args.model), phi=args.phi)
    with atomic_path(args.out) as tmp:
        emap.to_netcdf(tmp)
    print(emap)


if __name__ == "__main__":
    main()
