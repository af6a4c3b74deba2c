"""Dimer interaction energies: scans labelled with PySCF (counterpoise) and GFN2-xTB.

For each dimer of :data:`~nnp_lab.apps.hbond.dimers.DIMERS`:

1. the equilibrium H-bond coordinates are found by minimising the GFN2-xTB interaction
   energy over the six rigid-body coordinates (Nelder–Mead from the guess);
2. the scans of :func:`~nnp_lab.apps.hbond.dimers.scan_points` are built (clashes dropped);
3. every point is labelled with the reference level — by default DF-MP2/aug-cc-pVTZ with
   the Boys–Bernardi counterpoise correction — as Dask tasks through
   :class:`~nnp_lab.active.oracle.DaskOracle`, every result cached in SQLite as it
   arrives (a killed run resumes where it stopped), and with GFN2-xTB (no counterpoise:
   a minimal-basis tight-binding method has no BSSE correction to make);
4. one netCDF file per dimer is written atomically: positions (point, atom, xyz), the six
   coordinates, the scan family, the reference interaction energy (CP-corrected), the
   uncorrected one and the BSSE, the xTB interaction energy, status and error per point;
   the level of theory (method and every setting) sits in the attributes.

Energies are stored in kcal/mol (the unit of the H-bond literature; ``units`` attribute).

Command line::

    python -m nnp_lab.apps.hbond.dimer_data --out data/hbond --dimers water_dimer water_ammonia

More random points are appended to existing scans with ``--extend SEED --random N``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms
from ase.units import kcal, mol

from nnp_lab._atomic import atomic_path
from nnp_lab.apps.hbond.dimers import (
    COORDS,
    DimerSpec,
    HBondCoords,
    build_dimer,
    get_dimer,
    is_clash,
    monomer_key,
    monomers_of,
    scan_points,
)
from nnp_lab.data.labelers import Labeler, PySCFLabeler, XTBLabeler
from nnp_lab.errors import InputError

KCAL = kcal / mol  #: 1 kcal/mol in eV
REFERENCE = {"method": "mp2", "basis": "aug-cc-pvtz", "density_fit": True}
#: the (R_DA, θ_DHA) grid scanned for the reference energy maps of the water dimer
MAP_R = (2.6, 2.8, 3.0, 3.2, 3.5, 4.0)
MAP_THETA = (180.0, 160.0, 140.0, 120.0, 100.0)


def reference_labeler(spec: DimerSpec, **settings: Any) -> PySCFLabeler:
    """The counterpoise-corrected reference labeler for ``spec`` (fragment A = donor)."""
    kw = {**REFERENCE, **settings}
    return PySCFLabeler(counterpoise=list(range(spec.n_donor)), **kw)


def xtb_interaction(dimers: Sequence[Atoms], labeler: XTBLabeler | None = None) -> np.ndarray:
    """GFN2-xTB interaction energies E(AB) − E(A) − E(B) in kcal/mol (NaN where failed)."""
    lab = labeler or XTBLabeler("GFN2-xTB")
    out = np.full(len(dimers), np.nan)
    mono_cache: dict[bytes, float] = {}

    def energy(atoms: Atoms) -> float:  # rigid monomers: one calculation each
        key = monomer_key(atoms)
        if key not in mono_cache:
            res = lab.label(atoms)
            mono_cache[key] = res.energy if res.ok else math.nan
        return mono_cache[key]

    for k, d in enumerate(dimers):
        a, b = monomers_of(d)
        ab = lab.label(d)
        if ab.ok:
            out[k] = (ab.energy - energy(a) - energy(b)) / KCAL
    return out


def equilibrium(spec: DimerSpec, max_evals: int = 600) -> tuple[HBondCoords, float]:
    """GFN2-xTB minimum of the interaction energy over the six coordinates (kcal/mol)."""
    from scipy.optimize import minimize

    lab = XTBLabeler("GFN2-xTB")
    ref = build_dimer(spec, spec.guess)
    a, b = monomers_of(ref)
    e_mono = lab.label(a).energy + lab.label(b).energy  # rigid monomers: constant

    def f(x: np.ndarray) -> float:
        c = HBondCoords(*x)
        if not (2.2 <= c.r_da <= 4.0 and 100.0 <= c.theta <= 180.0):
            return 50.0
        d = build_dimer(spec, c)
        if is_clash(d):
            return 50.0
        res = lab.label(d)
        return (res.energy - e_mono) / KCAL if res.ok else 50.0

    x0 = np.array([getattr(spec.guess, k) for k in COORDS], dtype=float)
    simplex = [x0] + [x0 + np.eye(6)[k] * s for k, s in enumerate((0.15, 8, 30, 20, 20, 30))]
    res = minimize(
        f,
        x0,
        method="Nelder-Mead",
        options={
            "initial_simplex": np.array(simplex),
            "maxfev": max_evals,
            "xatol": 1e-3,
            "fatol": 1e-4,
        },
    )
    x = res.x.copy()
    x[1] = min(x[1], 180.0)
    return HBondCoords(*map(float, x)), float(res.fun)


def dimer_structures(
    spec: DimerSpec,
    eq: HBondCoords,
    n_random: int = 40,
    seed: int = 0,
    with_map: bool = False,
    n_far: int = 0,
) -> list[Atoms]:
    """The scan structures of ``spec`` around ``eq`` (clashes removed); ``info['family']``."""
    pts = scan_points(
        eq,
        n_random=n_random,
        seed=seed,
        map_r=MAP_R if with_map else (),
        map_theta=MAP_THETA if with_map else (),
        n_far=n_far,
    )
    out = []
    for p in pts:
        d = build_dimer(spec, p.coords)
        if is_clash(d):
            continue
        d.info["family"] = p.family
        out.append(d)
    return out


def cheap_points(
    spec: DimerSpec, eq: HBondCoords, n_random: int = 1500, seed: int = 1
) -> tuple[list[Atoms], np.ndarray]:
    """Many random rigid-body points (and the systematic scans) with GFN2-xTB interaction
    energies (kcal/mol): the pretraining set of the H-bond model (seconds to compute).
    A third as many again lie farther out (1–5 Å beyond equilibrium), and dense distance
    lines (0.1 Å steps from eq − 0.3 Å out to eq + 6.5 Å, where every contact is beyond the
    model's cutoff) at the equilibrium and four random orientations teach the decay."""
    structures = dimer_structures(spec, eq, n_random=n_random, seed=seed, n_far=n_random // 3)
    rng = np.random.default_rng([seed, 99])
    orientations = [eq] + [
        replace(
            eq,
            omega=float(rng.uniform(0, 360)),
            phi=float(rng.uniform(-60, 60)),
            psi=float(rng.uniform(-60, 60)),
            chi=float(rng.uniform(0, 360)),
            theta=float(rng.uniform(140, 180)),
        )
        for _ in range(4)
    ]
    for o in orientations:
        for r in np.arange(eq.r_da - 0.3, eq.r_da + 6.5, 0.1):
            d = build_dimer(spec, replace(o, r_da=float(r)))
            if not is_clash(d):
                d.info["family"] = "line"
                structures.append(d)
    return structures, xtb_interaction(structures)


def scan_dataset(
    spec: DimerSpec,
    structures: Sequence[Atoms],
    results: Sequence[Any],
    xtb: np.ndarray,
    labeler: Labeler,
    eq: HBondCoords,
    e_eq_xtb: float,
) -> xr.Dataset:
    """The netCDF layout of one dimer's scan (see the module docstring)."""
    n = len(structures)
    pos = np.stack([s.positions for s in structures])
    ok = np.array([r.ok for r in results])

    def extra(key: str) -> np.ndarray:
        return np.array([r.extras.get(key, np.nan) / KCAL if r.ok else np.nan for r in results])

    data: dict[str, Any] = {
        "positions": (("point", "atom", "xyz"), pos, {"units": "Å"}),
        "family": (("point",), np.array([s.info["family"] for s in structures], dtype=str)),
        "e_int": (
            ("point",),
            extra("interaction_energy"),
            {"units": "kcal/mol", "long_name": f"{labeler.method} interaction energy"},
        ),
        "e_int_raw": (
            ("point",),
            extra("interaction_energy_raw"),
            {"units": "kcal/mol", "long_name": "without counterpoise"},
        ),
        "bsse": (("point",), extra("bsse"), {"units": "kcal/mol"}),
        "e_int_xtb": (("point",), xtb, {"units": "kcal/mol", "long_name": "GFN2-xTB"}),
        "status": (("point",), np.where(ok, "ok", "failed").astype(str)),
        "error": (("point",), np.array([r.error for r in results], dtype=str)),
    }
    for k in COORDS:
        data[k] = (
            ("point",),
            np.array([s.info[k] for s in structures], dtype=float),
            {"units": "Å" if k == "r_da" else "degree"},
        )
    ds = xr.Dataset(
        data,
        coords={
            "point": np.arange(n),
            "numbers": (("atom",), structures[0].numbers.astype(np.int64)),
        },
    )
    ds.attrs.update(
        dimer=spec.name,
        donor=spec.donor,
        acceptor=spec.acceptor,
        n_donor=spec.n_donor,
        reference_method=labeler.method,
        reference_settings=json.dumps(labeler.settings(), sort_keys=True),
        cheap_method="GFN2-xTB (tblite), E(AB) − E(A) − E(B), no counterpoise",
        equilibrium=json.dumps(eq.as_dict()),
        equilibrium_method="GFN2-xTB minimum over the six rigid-body coordinates",
        equilibrium_e_int_xtb=e_eq_xtb,
        monomer_geometries="G2 (ase.build.molecule) for water, ammonia, methanol, formic "
        "acid; S22 formamide dimer's first monomer for formamide; rigid",
    )
    return ds


def load_scan(path: str | os.PathLike) -> xr.Dataset:
    """A dimer scan written by :func:`generate` (loaded into memory)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no dimer scan at {path}; generate it with python -m {__name__}")
    with xr.open_dataset(path) as ds:
        return ds.load()


def scan_structures(ds: xr.Dataset) -> list[Atoms]:
    """The dimers of a scan dataset as ``ase.Atoms`` (``info``: n_donor, coordinates)."""
    numbers = ds["numbers"].values
    out = []
    for k in range(ds.sizes["point"]):
        a = Atoms(numbers=numbers, positions=ds["positions"].values[k])
        a.info.update(
            dimer=ds.attrs["dimer"],
            n_donor=int(ds.attrs["n_donor"]),
            family=str(ds["family"].values[k]),
            **{c: float(ds[c].values[k]) for c in COORDS},
        )
        out.append(a)
    return out


def generate(
    dimers: Sequence[str],
    out_dir: str | os.PathLike,
    cache: str | os.PathLike | None = None,
    n_random: int = 40,
    n_workers: int = 1,
    seed: int = 0,
    reference: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Label the scans of ``dimers`` and write ``out_dir/<dimer>.nc``.

    Returns per dimer its ``path``, the number of ``points`` and how many reference
    calculations this call ``computed`` (the rest came from the cache).

    Resumable: every reference result goes to the SQLite ``cache`` (default
    ``out_dir/labels.sqlite``) as it arrives; a rerun pays only for what is missing.
    The water dimer also gets the (R_DA, θ) map grid.
    """
    from nnp_lab.active.oracle import DaskOracle

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = Path(cache) if cache is not None else out / "labels.sqlite"
    paths = {}
    for name in dimers:
        spec = get_dimer(name)
        eq, e_eq = equilibrium(spec)
        structures = dimer_structures(
            spec, eq, n_random=n_random, seed=seed, with_map=name == "water_dimer"
        )
        labeler = reference_labeler(spec, **(reference or {}))
        oracle = DaskOracle(labeler, cache=cache_path, config={"n_workers": n_workers})
        with oracle:
            results = oracle.label(structures, show_progress=show_progress)
        xtb = xtb_interaction(structures)
        ds = scan_dataset(spec, structures, results, xtb, labeler, eq, e_eq)
        path = out / f"{name}.nc"
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp)
        paths[name] = {"path": path, "points": len(structures), "computed": oracle.computed}
    return paths


def _scan_labeler(old: xr.Dataset, path: Path) -> PySCFLabeler:
    """The reference labeler rebuilt from a scan's recorded settings (refused if they differ)."""
    spec = get_dimer(str(old.attrs["dimer"]))
    settings = json.loads(old.attrs["reference_settings"])
    labeler = reference_labeler(
        spec,
        method=settings["method"],
        basis=settings["basis"],
        density_fit=bool(settings.get("density_fit", False)),
    )
    if json.dumps(labeler.settings(), sort_keys=True) != old.attrs["reference_settings"]:
        raise InputError(
            f"{path} was labelled with {old.attrs['reference_settings']}, which this version "
            f"rebuilds as {json.dumps(labeler.settings(), sort_keys=True)}; regenerate the scan"
        )
    return labeler


def used_seeds(scan: xr.Dataset) -> list[int]:
    """Seeds already drawn for a scan: 0 (the original draw) and every extension's."""
    return [0] + [int(e["seed"]) for e in json.loads(scan.attrs.get("extensions", "[]"))]


def random_candidates(scan: xr.Dataset, n: int, seed: int, family: str = "random") -> list[Atoms]:
    """``n`` random rigid-body placements (the ``random`` family of :func:`scan_points`,
    or with ``family="far"`` random orientations 1–5 Å beyond equilibrium, the decay;
    clashes dropped) around the scan's stored equilibrium, drawn with ``seed``."""
    if family not in ("random", "far"):
        raise InputError(f"family must be 'random' or 'far', got {family!r}")
    if seed in used_seeds(scan):
        raise InputError(
            f"seed {seed} was already used for this scan (used: {used_seeds(scan)}); pick another"
        )
    if n < 1:
        raise InputError(f"the number of random points must be at least 1, got {n}")
    spec = get_dimer(str(scan.attrs["dimer"]))
    eq = HBondCoords(**json.loads(scan.attrs["equilibrium"]))
    counts = {"n_random": n} if family == "random" else {"n_random": 0, "n_far": n}
    return [
        d for d in dimer_structures(spec, eq, seed=seed, **counts) if d.info["family"] == family
    ]


def append_points(
    path: str | os.PathLike,
    structures: Sequence[Atoms],
    record: dict[str, Any],
    cache: str | os.PathLike | None = None,
    n_workers: int = 1,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Label ``structures`` (each with ``info['family']``) at the scan's own reference level
    and with GFN2-xTB and append them to the scan at ``path``, replaced atomically.

    ``record`` (JSON-able, with the ``seed`` of the draw) joins the scan's ``extensions``
    attribute. Resumable through the SQLite ``cache`` (default: ``labels.sqlite`` beside
    the scan). Returns the ``path``, the ``added`` and total ``points`` and how many
    reference calculations were ``computed``.
    """
    from nnp_lab.active.oracle import DaskOracle

    path = Path(path)
    old = load_scan(path)
    if int(record["seed"]) in used_seeds(old):
        raise InputError(f"seed {record['seed']} was already used for {path}; pick another")
    if not structures:
        raise InputError("no structures to append")
    labeler = _scan_labeler(old, path)
    spec = get_dimer(str(old.attrs["dimer"]))
    eq = HBondCoords(**json.loads(old.attrs["equilibrium"]))
    cache_path = Path(cache) if cache is not None else path.parent / "labels.sqlite"
    oracle = DaskOracle(labeler, cache=cache_path, config={"n_workers": n_workers})
    with oracle:
        results = oracle.label(list(structures), show_progress=show_progress)
    xtb = xtb_interaction(structures)
    e_eq = float(old.attrs["equilibrium_e_int_xtb"])
    new = scan_dataset(spec, structures, results, xtb, labeler, eq, e_eq)
    new = new.assign_coords(point=np.arange(len(structures)) + old.sizes["point"])
    parts = [old, new.drop_vars("numbers")]
    for k in ("family", "status", "error"):  # fixed-width strings: widen before joining
        width = max(int(p[k].dtype.itemsize // 4) for p in parts)
        parts = [p.assign({k: p[k].astype(f"<U{max(width, 1)}")}) for p in parts]
    ds = xr.concat(parts, dim="point", data_vars="all")
    ds.attrs = dict(old.attrs)
    ext = json.loads(old.attrs.get("extensions", "[]"))
    ext.append({**record, "added": len(structures)})
    ds.attrs["extensions"] = json.dumps(ext)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp)
    return {
        "path": path,
        "added": len(structures),
        "points": ds.sizes["point"],
        "computed": oracle.computed,
    }


def extend_scan(
    path: str | os.PathLike,
    n_random: int,
    seed: int,
    cache: str | os.PathLike | None = None,
    n_workers: int = 1,
    show_progress: bool = True,
    family: str = "random",
) -> dict[str, Any]:
    """Append ``n_random`` more random rigid-body points to the scan at ``path`` (in place).

    The points are drawn as the ``random`` family of :func:`scan_points` (or, with
    ``family="far"``, its ``far`` family: the decay 1–5 Å beyond equilibrium, which the
    random family never reaches) around the scan's stored equilibrium with a new ``seed``
    (the original draw used seed 0; a seed already used is refused, as it would repeat
    points), labelled at the scan's own reference level (its recorded settings are rebuilt
    and compared) and with GFN2-xTB, and the extended dataset replaces the file atomically
    (see :func:`append_points`).
    """
    structures = random_candidates(load_scan(path), n_random, seed, family)
    return append_points(
        path,
        structures,
        {"seed": seed, "n_random": n_random, "family": family},
        cache=cache,
        n_workers=n_workers,
        show_progress=show_progress,
    )


def main(argv: Sequence[str] | None = None) -> None:
    from nnp_lab.apps.hbond.dimers import DIMERS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for <dimer>.nc and labels.sqlite")
    ap.add_argument("--dimers", nargs="+", default=sorted(DIMERS), choices=sorted(DIMERS))
    ap.add_argument("--cache", default=None, help="SQLite label cache (default OUT/labels.sqlite)")
    ap.add_argument("--random", type=int, default=40, help="random rigid-body samples per dimer")
    ap.add_argument("--workers", type=int, default=1, help="Dask worker processes")
    ap.add_argument("--basis", default=REFERENCE["basis"])
    ap.add_argument(
        "--extend",
        type=int,
        default=None,
        metavar="SEED",
        help="append --random more random points drawn with SEED to the existing "
        "OUT/<dimer>.nc files instead of generating them",
    )
    ap.add_argument(
        "--far",
        action="store_true",
        help="with --extend: draw the points 1–5 Å beyond equilibrium (the decay; "
        "they always train) instead of around it",
    )
    args = ap.parse_args(argv)
    if args.far and args.extend is None:
        ap.error("--far appends to existing scans: give --extend SEED as well")
    if args.extend is not None:
        for name in args.dimers:
            r = extend_scan(
                Path(args.out) / f"{name}.nc",
                args.random,
                args.extend,
                cache=args.cache,
                n_workers=args.workers,
                family="far" if args.far else "random",
            )
            print(
                f"{name}: {r['added']} points added ({r['computed']} computed), "
                f"{r['points']} in all → {r['path']}"
            )
        return
    paths = generate(
        args.dimers,
        args.out,
        cache=args.cache,
        n_random=args.random,
        n_workers=args.workers,
        reference={"basis": args.basis},
    )
    for name, r in paths.items():
        ds = load_scan(r["path"])
        ok = ds["status"].values == "ok"
        print(
            f"{name}: {int(ok.sum())}/{r['points']} points ok ({r['computed']} computed, the "
            f"rest from the cache) → {r['path']}"
        )


if __name__ == "__main__":
    main()
