"""How good is the reference level? S22 deviations and a CCSD(T) calibration.

- :func:`s22_table`: interaction energies of S22's H-bonded dimers (ASE ships the
  geometries and the CCSD(T)/CBS interaction energies of Jurečka et al. 2006) at the
  reference level and with GFN2-xTB, with their deviations.
- :func:`calibration`: CCSD(T) against MP2 in the same (aug-cc-pVDZ) basis, both
  counterpoise-corrected, on a subset of scan points: the (T)-level correction
  δ = E(CCSD(T)) − E(MP2) that the MP2 reference leaves out, point by point.

Command line (writes ``calibration.nc`` and prints both tables)::

    python -m nnp_lab.apps.hbond.reference_check --out nnp_lab/resources/hbond
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from ase import Atoms

from nnp_lab._atomic import atomic_path
from nnp_lab.apps.hbond.dimer_data import (
    KCAL,
    REFERENCE,
    load_scan,
    scan_structures,
    xtb_interaction,
)
from nnp_lab.data.labelers import PySCFLabeler
from nnp_lab.errors import InputError

#: the H-bonded dimers of S22 (Jurečka et al. 2006), numbers 1–7
S22_HBONDED = (
    "Ammonia_dimer",
    "Water_dimer",
    "Formic_acid_dimer",
    "Formamide_dimer",
    "Uracil_dimer_h-bonded",
    "2-pyridoxine_2-aminopyridine_complex",
    "Adenine-thymine_Watson-Crick_complex",
)


def s22_dimer(name: str) -> Atoms:
    """An S22 dimer as ``ase.Atoms`` with ``info['n_donor']`` = atoms of its first monomer
    and ``info['e_cc']`` = the S22 CCSD(T)/CBS interaction energy (kcal/mol)."""
    from ase.data import s22

    if name not in s22.data:
        raise InputError(f"{name!r} is not an S22 system; choose from {sorted(s22.s22)}")
    atoms = s22.create_s22_system(name)
    atoms.info.update(
        n_donor=int(s22.data[name]["dimer atoms"][0]),
        e_cc=float(s22.data[name]["interaction energy CC"]) / KCAL,
        dimer=name,
    )
    return atoms


def cp_interaction(atoms: Atoms, **settings: object) -> float:
    """Counterpoise-corrected PySCF interaction energy (kcal/mol) of a dimer."""
    kw = {**REFERENCE, **settings}
    lab = PySCFLabeler(counterpoise=list(range(int(atoms.info["n_donor"]))), **kw)
    res = lab.label(Atoms(atoms.numbers, atoms.positions))
    if not res.ok:
        raise InputError(
            f"{lab.method} failed on {atoms.info.get('dimer', 'the dimer')}: {res.error}"
        )
    return res.extras["interaction_energy"] / KCAL


def s22_table(names: Sequence[str] = S22_HBONDED[:4], reference: bool = True) -> xr.Dataset:
    """S22 CCSD(T)/CBS, the reference level and GFN2-xTB for ``names`` (kcal/mol)."""
    dimers = [s22_dimer(n) for n in names]
    e_cc = np.array([d.info["e_cc"] for d in dimers])
    ds = xr.Dataset(coords={"system": list(names)})
    ds["e_s22"] = ("system", e_cc, {"units": "kcal/mol", "long_name": "S22 CCSD(T)/CBS"})
    ds["e_xtb"] = (
        "system",
        xtb_interaction(dimers),
        {"units": "kcal/mol", "long_name": "GFN2-xTB"},
    )
    ds["d_xtb"] = ds["e_xtb"] - ds["e_s22"]
    if reference:
        e_ref = np.array([cp_interaction(d) for d in dimers])
        method = PySCFLabeler(counterpoise=[0], **REFERENCE).method
        ds["e_ref"] = ("system", e_ref, {"units": "kcal/mol", "long_name": method})
        ds["d_ref"] = ds["e_ref"] - ds["e_s22"]
    return ds


def calibration(
    structures: Sequence[Atoms], cache: str | os.PathLike | None = None, n_workers: int = 1
) -> xr.Dataset:
    """CCSD(T) and MP2 (aug-cc-pVDZ, CP) interaction energies and δ = CCSD(T) − MP2."""
    from nnp_lab.active.oracle import DaskOracle

    out = {}
    groups: dict[int, list[int]] = {}
    for k, s in enumerate(structures):
        groups.setdefault(int(s.info["n_donor"]), []).append(k)
    for method in ("ccsd(t)", "mp2"):
        e = np.full(len(structures), np.nan)
        for n_donor, idx in groups.items():
            lab = PySCFLabeler(method, "aug-cc-pvdz", counterpoise=list(range(n_donor)))
            with DaskOracle(lab, cache=cache, config={"n_workers": n_workers}) as oracle:
                res = oracle.label(
                    [Atoms(structures[k].numbers, structures[k].positions) for k in idx],
                    show_progress=False,
                )
            for k, r in zip(idx, res):
                if r.ok:
                    e[k] = r.extras["interaction_energy"] / KCAL
        out[method] = e
    ds = xr.Dataset(
        {
            "e_ccsd_t": (
                "point",
                out["ccsd(t)"],
                {"units": "kcal/mol", "long_name": "CCSD(T)/aug-cc-pVDZ, CP"},
            ),
            "e_mp2": (
                "point",
                out["mp2"],
                {"units": "kcal/mol", "long_name": "MP2/aug-cc-pVDZ, CP"},
            ),
        },
        coords={
            "dimer": ("point", [str(s.info.get("dimer", "")) for s in structures]),
            "r_da": ("point", [float(s.info.get("r_da", np.nan)) for s in structures]),
        },
    )
    ds["delta"] = ds["e_ccsd_t"] - ds["e_mp2"]
    ds["delta"].attrs = {"units": "kcal/mol", "long_name": "CCSD(T) − MP2 (aug-cc-pVDZ, CP)"}
    return ds


def calibration_points(scan_dir: str | os.PathLike) -> list[Atoms]:
    """The CCSD(T) subset: S22's water and ammonia dimers, the water dimer's distance scan
    (``r`` family, 14 points) and every third point of water–ammonia's."""
    pts = [s22_dimer("Water_dimer"), s22_dimer("Ammonia_dimer")]
    for name, step in (("water_dimer", 1), ("water_ammonia", 3)):
        path = Path(scan_dir) / f"{name}.nc"
        if not path.exists():
            continue
        ds = load_scan(path)
        r = [s for s, fam in zip(scan_structures(ds), ds["family"].values) if fam == "r"]
        pts += r[::step]
    return pts


def print_s22_table(table: xr.Dataset) -> None:
    """The S22 deviation table as text (kcal/mol)."""
    head = (
        f"{'S22 system':24s} {'CCSD(T)/CBS':>11s} {'reference':>9s} {'Δ':>6s} {'xTB':>7s} {'Δ':>6s}"
    )
    print(head)
    for k in range(table.sizes["system"]):
        row = table.isel(system=k)
        print(
            f"{row.system.values!s:24s} {float(row.e_s22):11.2f} {float(row.e_ref):9.2f} "
            f"{float(row.d_ref):6.2f} {float(row.e_xtb):7.2f} {float(row.d_xtb):6.2f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", required=True, help="folder with the dimer scans; calibration.nc goes here"
    )
    ap.add_argument("--cache", default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--skip-s22", action="store_true", help="only the CCSD(T) calibration")
    args = ap.parse_args(argv)
    if not args.skip_s22:
        print_s22_table(s22_table())
    cal = calibration(calibration_points(args.out), cache=args.cache, n_workers=args.workers)
    path = Path(args.out) / "calibration.nc"
    with atomic_path(path) as tmp:
        cal.to_netcdf(tmp)
    d = cal["delta"].values
    print(
        f"CCSD(T) − MP2 (aug-cc-pVDZ, CP) on {np.isfinite(d).sum()} points: mean "
        f"{np.nanmean(d):.3f}, range {np.nanmin(d):.3f} … {np.nanmax(d):.3f} kcal/mol → {path}"
    )


if __name__ == "__main__":
    main()
