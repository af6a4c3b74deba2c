"""Malonaldehyde: intramolecular proton transfer, H/D kinetic isotope effect by PIMD.

    python -m nnp_lab.apps.kie.malonaldehyde points --out malonaldehyde_xtb.extxyz
    python -m nnp_lab.apps.kie.malonaldehyde grow --workdir mal_al
    python -m nnp_lab.apps.kie.malonaldehyde kie --model mal_al/iter_011/committee.pt \\
        --out malonaldehyde_kie.nc --temperatures 200 300 500

1. **Stationary points** with GFN2-xTB (tblite): the enol minimum (BFGS), its mirror
   image (the proton on the other oxygen — the same energy, atoms relabelled), and the
   C2v transition state by climbing-image NEB between them.
2. **Potential**: committee active learning (:class:`~nnp_lab.active.loop.ActiveLearner`)
   with GFN2-xTB as the oracle: seed data at the stationary points (quantum normal-mode
   samples: zero-point spread; rattled; classical MD at 600 K);
   explorers run classical MD and ring-polymer MD (P beads, every bead judged), so the
   committee is trained where the quantum ring polymers go.
3. **KIE(T)**: :func:`~nnp_lab.dynamics.pimd.reaction.molecular_kie` with ξ = d(O₁–H) −
   d(O₂–H) for the transferring H (→ D): centroid PMF by umbrella sampling + MBAR, RPMD
   recrossing factor, quantum-TST KIE by mass thermodynamic integration, and P = 1
   (classical) beside them.

Atom order: O₁ C₁ C₂ C₃ O₂ H(C₁) H(C₂) H(C₃) H(O); the proton starts on O₂.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms, units

from nnp_lab.errors import InputError

RESOURCE_DIR = Path(__file__).resolve().parents[2] / "resources" / "kie"
POINTS = RESOURCE_DIR / "malonaldehyde_xtb.extxyz"
"""GFN2-xTB reactant, transition state and product (the ``points`` command)."""
MODEL = RESOURCE_DIR / "malonaldehyde_committee.pt"
"""The committee grown by active learning (the ``grow`` command, last iteration)."""
KIE_TABLE = RESOURCE_DIR / "malonaldehyde_kie.nc"
"""The shipped KIE(T) table (the ``kie`` command)."""

DONOR, PROTON, ACCEPTOR = 4, 8, 0
"""The transfer coordinate's atoms: ξ = |r_H − r_O₂| − |r_H − r_O₁| < 0 in the reactant."""
MIRROR = [4, 3, 2, 1, 0, 7, 6, 5, 8]
"""The atom relabelling that maps the molecule onto its mirror image (O₁ ↔ O₂ …)."""


def initial_guess() -> Atoms:
    """A planar enol guess (Å), C_s; refined by :func:`stationary_points`."""
    pos = [
        (-1.25, -0.55, 0.0),  # O1 (carbonyl)
        (-1.21, 0.70, 0.0),  # C1
        (0.00, 1.40, 0.0),  # C2
        (1.21, 0.70, 0.0),  # C3
        (1.25, -0.60, 0.0),  # O2 (hydroxyl)
        (-2.15, 1.25, 0.0),  # H on C1
        (0.00, 2.48, 0.0),  # H on C2
        (2.15, 1.25, 0.0),  # H on C3
        (0.45, -1.05, 0.0),  # transferring H on O2
    ]
    return Atoms("OCCCOHHHH", positions=pos)


def mirror(atoms: Atoms) -> Atoms:
    """The tautomer with the proton on the other oxygen: x → −x, atoms relabelled."""
    out = atoms.copy()
    pos = atoms.positions[MIRROR].copy()
    pos[:, 0] *= -1
    out.positions = pos
    return out


def transfer_coordinate(atoms: Atoms) -> float:
    """ξ = d(O₂–H) − d(O₁–H) (Å): < 0 reactant, 0 transition state, > 0 product."""
    return float(atoms.get_distance(PROTON, DONOR) - atoms.get_distance(PROTON, ACCEPTOR))


def stationary_points(
    labeler: dict[str, Any] | None = None, n_images: int = 9, fmax: float = 0.005
) -> list[Atoms]:
    """[reactant, transition state, product] on the reference (default GFN2-xTB), each
    with ``info`` ``name``, ``energy_eV`` and ``xi``; the NEB images between them are
    ``ts.info["path_energies_eV"]``."""
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE

    from nnp_lab.data.labelers import make_labeler

    lab = make_labeler(labeler or {"kind": "xtb", "method": "GFN2-xTB"})
    react = initial_guess()
    react.calc = lab.as_calculator()
    BFGS(react, logfile=None).run(fmax=fmax, steps=500)
    prod = mirror(react)
    images = [react.copy() for _ in range(n_images + 1)] + [prod.copy()]
    neb = NEB(images, climb=True, method="improvedtangent")
    neb.interpolate(method="idpp")
    for im in images:
        im.calc = lab.as_calculator()
    FIRE(neb, logfile=None).run(fmax=fmax * 4, steps=2000)
    energies = [float(im.get_potential_energy()) for im in images]
    top = int(np.argmax(energies))
    ts = images[top].copy()
    ts.calc = lab.as_calculator()
    e0 = energies[0]
    out = []
    for name, a in (("reactant", images[0]), ("transition_state", ts), ("product", images[-1])):
        b = Atoms(a.numbers, a.positions)
        b.info.update(
            name=name,
            energy_eV=float(a.get_potential_energy()),
            xi=transfer_coordinate(b),
            method=lab.method,
        )
        out.append(b)
    out[1].info["path_energies_eV"] = " ".join(f"{e - e0:.6f}" for e in energies)
    out[1].info["barrier_eV"] = out[1].info["energy_eV"] - out[0].info["energy_eV"]
    return out


def load_points(path: str | os.PathLike = POINTS) -> dict[str, Atoms]:
    """The shipped stationary points by name."""
    import ase.io

    if not Path(path).exists():
        raise InputError(f"{path} missing: run python -m nnp_lab.apps.kie.malonaldehyde points")
    return {a.info["name"]: a for a in ase.io.read(path, index=":")}


# ---------------------------------------------------------------------------- potential
def al_config(
    workdir: str | os.PathLike,
    iterations: int = 8,
    budget: int = 80,
    n_workers: int = 1,
    points: str | os.PathLike = POINTS,
) -> dict[str, Any]:
    """The active-learning config (GFN2-xTB oracle); writes ``workdir/points.extxyz``."""
    import ase.io

    from nnp_lab._atomic import atomic_path

    wd = Path(workdir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    pts = load_points(points)
    with atomic_path(wd / "points.extxyz") as tmp:
        ase.io.write(tmp, list(pts.values()), format="extxyz")
    mol = {"file": str(wd / "points.extxyz"), "index": ":", "name": "malonaldehyde"}
    return {
        "workdir": str(wd),
        "labeler": {"kind": "xtb", "method": "GFN2-xTB"},
        "cache": "labels.sqlite",
        "initial": [
            {"kind": "structures", "structures": [mol]},
            {
                "kind": "normal_modes",
                "n": 100,
                "temperature": 300.0,
                "quantum": True,
                "structures": [mol],
            },
            {"kind": "rattle", "n": 15, "stdev": 0.05, "structures": [mol]},
            {
                "kind": "md",
                "structures": [mol],
                "temperatures": [600.0],
                "frames": 10,
                "interval": 20,
                "timestep_fs": 0.5,
            },
        ],
        "starts": [mol],
        "model": {"descriptor": "ani1x", "hidden": [64, 64]},
        "committee": {"size": 4, "bootstrap": True, "seed": 0},
        "training": {
            "epochs": 200,
            "batch_size": 8,
            "learning_rate": 0.003,
            "lr_patience": 10,
            "force_weight": 1.0,
        },
        "retraining": {"epochs": 40, "batch_size": 8, "learning_rate": 0.001, "force_weight": 1.0},
        "validation_fraction": 0.15,
        "explore": {
            "temperatures": [200.0, 500.0],
            "beads": 32,
            "steps": 600,
            "timestep_fs": 0.5,
            "sample_every": 10,
            "threshold": 0.1,
            "hard_limit": 2.0,
            "max_restarts": 4,
            "min_distance": 0.6,
        },
        "select": {"budget": budget},
        "oracle": {"n_workers": n_workers},
        "stop": {"max_iterations": iterations},
        "seed": 0,
    }


WINDOWS = (-1.0, -0.8, -0.6, -0.45, -0.3, -0.15, 0.0)
"""ξ centres (Å) of the umbrella explorers of the second stage (the path to the TS;
the product side is its mirror image, which the descriptor does not distinguish)."""


def window_config(config: dict[str, Any], windows: Sequence[float] = WINDOWS) -> dict[str, Any]:
    """Second-stage steering of :func:`al_config`'s run: ring-polymer explorers held in
    umbrella windows along ξ (κ = 3 eV/Å²), started on the reactant → TS path, so the
    barrier region — which unbiased explorers cross only in passing — is learned where
    the PIMD rate calculation will sample it. Only ``starts``/``explore`` change (allowed
    on resume)."""
    import ase.io

    from nnp_lab._atomic import atomic_path

    wd = Path(config["workdir"])
    pts = load_points(wd / "points.extxyz")
    with atomic_path(wd / "windows.extxyz") as tmp:
        ase.io.write(tmp, window_starts(pts, windows), format="extxyz")
    cfg = json.loads(json.dumps(config))
    cfg["starts"] = [{"file": str(wd / "windows.extxyz"), "index": ":", "name": "window"}]
    cfg["explore"].update(
        steps=400,
        umbrella={"triplet": [DONOR, PROTON, ACCEPTOR], "centers": list(windows), "kappa": 3.0},
    )
    return cfg


def grow_potential(
    workdir: str | os.PathLike,
    progress: Callable[[dict[str, Any]], None] | None = None,
    window_iterations: int = 3,
    **config: Any,
) -> Path:
    """Run (or resume) the active learning — unbiased ring-polymer explorers, then
    ``window_iterations`` more with umbrella-window explorers; returns the final
    committee's path."""
    from nnp_lab.active.loop import ActiveLearner

    first = al_config(workdir, **config)
    learner = ActiveLearner(first, progress=progress)
    st, last = learner.state(), first["stop"]["max_iterations"]
    if st["iteration"] < last or (st["iteration"] == last and st["stage"] != "train"):
        learner.run()
    if window_iterations > 0:
        second = window_config(first)
        second["stop"]["max_iterations"] = first["stop"]["max_iterations"] + window_iterations
        learner = ActiveLearner(second, progress=progress)
        learner.run()
    return learner.iter_dir(int(learner.state()["iteration"])) / "committee.pt"


# ---------------------------------------------------------------------------- check
def bead_errors(
    model: Any,
    temperature_K: float = 300.0,
    n_beads: int = 16,
    samples: int = 4,
    beads_per_sample: int = 2,
    start: str = "transition_state",
    seed: int = 11,
    points: dict[str, Atoms] | None = None,
) -> dict[str, float]:
    """The committee against GFN2-xTB on geometries it never saw: beads of a fresh PIMD
    run with the committee itself (started at ``start``), labelled by xTB now. Energies
    relative to the ``start`` geometry. Returns force MAE/RMSE (eV/Å), energy MAE (eV per
    molecule), the largest xTB force and the number of frames."""
    from nnp_lab.data.batch import Batch
    from nnp_lab.data.labelers import XTBLabeler
    from nnp_lab.dynamics.calculator import load_model
    from nnp_lab.dynamics.pimd.rpmd import RingPolymer

    if isinstance(model, str | os.PathLike):
        model = load_model(model)
    pts = points or load_points()
    ref = pts[start]
    ring = RingPolymer(
        ref,
        model,
        {"n_beads": n_beads, "temperature_K": temperature_K, "timestep_fs": 0.5, "seed": seed},
    )
    calc = XTBLabeler().as_calculator()
    a0 = ref.copy()
    a0.calc = calc
    e_ref0 = a0.get_potential_energy()
    b = Batch.from_atoms([ref], dtype=model.dtype, device=model.device)
    e_nnp0 = float(model(b, forces=False)["energy_mean"][0])
    e_err, f_err, f_ref = [], [], []
    pick = np.linspace(0, n_beads, beads_per_sample, endpoint=False).astype(int)
    for _ in range(samples):
        ring.step(60)
        for k in pick:
            a = Atoms(ref.numbers, ring.q[k].numpy())
            a.calc = calc
            f = a.get_forces()
            e_err.append(
                float(ring.results["energy"][k]) - e_nnp0 - (a.get_potential_energy() - e_ref0)
            )
            f_err.append(ring.results["forces"][k].numpy() - f)
            f_ref.append(f)
    fe = np.asarray(f_err)
    return {
        "force_mae": float(np.abs(fe).mean()),
        "force_rmse": float(np.sqrt((fe**2).mean())),
        "energy_mae": float(np.abs(e_err).mean()),
        "max_reference_force": float(np.linalg.norm(np.asarray(f_ref), axis=-1).max()),
        "frames": len(e_err),
    }


# ---------------------------------------------------------------------------- KIE
def beads_for(temperature_K: float) -> int:
    """P = 8⌈(6000 K / T) / 8⌉: ≈ 1.4 βħω of the O–H stretch (3000 cm⁻¹, ħω/k = 4317 K),
    32 beads at 200 K, 16 at 400–500 K."""
    return max(8, 8 * math.ceil(6000.0 / temperature_K / 8))


def window_starts(points: dict[str, Atoms], centers: Sequence[float]) -> list[Atoms]:
    """Start geometries for umbrella windows: the reactant→TS→product path, linear in ξ."""
    r, ts, p = (points[k] for k in ("reactant", "transition_state", "product"))
    xr_, xp = r.info["xi"], p.info["xi"]
    out = []
    for c in centers:
        if c <= 0:
            f = min(max(c / xr_, 0.0), 1.0)  # 1 at the reactant, 0 at the TS
            pos = f * r.positions + (1 - f) * ts.positions
        else:
            f = min(c / xp, 1.0)
            pos = f * p.positions + (1 - f) * ts.positions
        out.append(Atoms(r.numbers, pos))
    return out


def malonaldehyde_kie(
    model: Any,
    temperatures: Sequence[float] = (200.0, 300.0, 500.0),
    centers: Sequence[float] | None = None,
    kappa: float = 3.0,
    steps: int = 700,
    replicas: int = 2,
    kappa_kw: dict[str, Any] | None = None,
    ti_kw: dict[str, Any] | None = None,
    timestep_fs: float = 0.5,
    seed: int = 0,
    points: dict[str, Atoms] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> xr.Dataset:
    """k_H, k_D and KIE(T) of the proton transfer: RPMD (κ · centroid TST), centroid TST,
    quantum-TST KIE by mass TI, and the classical (P = 1) rates; PMFs and κ(t) included.

    Rates in 1/ps (one direction, reactant → product)."""
    from nnp_lab.dynamics.calculator import load_model
    from nnp_lab.dynamics.pimd.reaction import (
        isotope_ti,
        plateau,
        transmission,
        tst_rate,
        umbrella_pmf,
    )
    from nnp_lab.dynamics.pimd.rpmd import DEUTERIUM_MASS, with_isotope

    if isinstance(model, str | os.PathLike):
        model = load_model(model)
    temps = np.asarray(temperatures, dtype=float)
    if temps.ndim != 1 or len(temps) == 0 or (temps <= 0).any():
        raise InputError("temperatures must be a non-empty list of positive kelvin")
    pts = points or load_points()
    centers = np.asarray(
        centers if centers is not None else np.round(np.arange(-1.05, 0.16, 0.1), 3)
    )
    starts = window_starts(pts, centers)
    mol_h = pts["reactant"]
    mol_d = with_isotope(mol_h, [PROTON], DEUTERIUM_MASS)
    triplet = (DONOR, PROTON, ACCEPTOR)
    ts = pts["transition_state"]
    kkw = {"copies": 16, "releases": 2, "t_max_fs": 30.0, "timestep_fs": 0.25, "ts": ts}
    kkw.update(kappa_kw or {})
    tkw = {"n_mass": 3, "replicas": 3, "steps": steps, "ts": ts}
    tkw.update(ti_kw or {})
    iso = ["H", "D"]
    shape = (len(temps), 2)
    res = {k: np.zeros(shape) for k in ("rpmd", "tst", "kappa", "flux", "classical", "cl_tst")}
    res.update({k: np.zeros(shape) for k in ("cl_kappa", "barrier", "barrier_err")})
    ti = np.zeros(len(temps))
    ti_err = np.zeros(len(temps))
    n_beads = np.zeros(len(temps), dtype=int)
    pmfs: list[xr.Dataset] = []
    kappas: list[xr.Dataset] = []
    t0 = time.perf_counter()
    done = 0
    total = len(temps) * 3
    restarts = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            elapsed = time.perf_counter() - t0
            progress({"stage": "kie", "step": done, "steps": total, "elapsed_s": elapsed})

    for i, t in enumerate(temps):
        p_ = beads_for(float(t))
        n_beads[i] = p_
        cl = umbrella_pmf(
            mol_h,
            model,
            triplet,
            t,
            1,
            centers,
            kappa,
            steps,
            timestep_fs=timestep_fs,
            seed=seed,
            starts=starts,
            replicas=2 * replicas,
        )
        for j, mol in enumerate((mol_h, mol_d)):
            pmf = umbrella_pmf(
                mol,
                model,
                triplet,
                t,
                p_,
                centers,
                kappa,
                steps,
                timestep_fs=timestep_fs,
                seed=seed + j,
                starts=starts,
                replicas=replicas,
            )
            restarts += int(pmf.attrs["restarts"])
            kt = transmission(mol, model, triplet, t, p_, seed=seed + j, **kkw)
            kt1 = transmission(mol, model, triplet, t, 1, seed=seed + j, **kkw)
            res["flux"][i, j] = kt.attrs["flux_factor"]
            res["tst"][i, j] = tst_rate(pmf, kt.attrs["flux_factor"], t)
            res["kappa"][i, j] = plateau(kt)
            res["rpmd"][i, j] = res["kappa"][i, j] * res["tst"][i, j]
            res["cl_tst"][i, j] = tst_rate(cl, kt1.attrs["flux_factor"], t)
            res["cl_kappa"][i, j] = plateau(kt1)
            res["classical"][i, j] = res["cl_kappa"][i, j] * res["cl_tst"][i, j]
            w = pmf["pmf"]
            res["barrier"][i, j] = float(w.interp(xi=0.0))
            res["barrier_err"][i, j] = float(pmf["pmf_err"].interp(xi=0.0))
            pmfs.append(pmf.expand_dims(temperature=[t], isotope=[iso[j]]))
            kappas.append(kt.expand_dims(temperature=[t], isotope=[iso[j]]))
            tick()
        r = isotope_ti(
            mol_h, model, triplet, t, p_, DEUTERIUM_MASS, seed=seed, timestep_fs=timestep_fs, **tkw
        )
        ti[i], ti_err[i] = r["kie"], r["kie_err"]
        restarts += int(r["restarts"]) + int(cl.attrs["restarts"])
        tick()
    rate = {"units": "1/ps"}
    dims = ("temperature", "isotope")
    ds = xr.Dataset(
        {
            "k_rpmd": (dims, res["rpmd"], rate),
            "k_tst": (dims, res["tst"], {**rate, "long_name": "centroid (quantum) TST"}),
            "kappa": (dims, res["kappa"], {"long_name": "RPMD transmission plateau"}),
            "flux_factor": (dims, res["flux"], {"units": "amu^-1/2"}),
            "k_classical": (dims, res["classical"], {**rate, "long_name": "P = 1: κ · TST"}),
            "k_classical_tst": (dims, res["cl_tst"], rate),
            "kappa_classical": (dims, res["cl_kappa"]),
            "free_energy_barrier": (dims, res["barrier"], {"units": "eV"}),
            "free_energy_barrier_err": (dims, res["barrier_err"], {"units": "eV"}),
            "kie_qtst_ti": ("temperature", ti, {"long_name": "quantum-TST KIE by mass TI"}),
            "kie_qtst_ti_err": ("temperature", ti_err),
            "n_beads": ("temperature", n_beads),
        },
        coords={
            "temperature": ("temperature", temps, {"units": "K"}),
            "isotope": ("isotope", iso),
        },
        attrs={
            "reaction": "malonaldehyde intramolecular proton transfer, xi = d(O2-H) - d(O1-H)",
            "reference": pts["transition_state"].info.get("method", "GFN2-xTB"),
            "reference_barrier_eV": float(pts["transition_state"].info["barrier_eV"]),
            "umbrella_kappa_eV_per_A2": kappa,
            "umbrella_centers_A": json.dumps([float(c) for c in centers]),
            "steps_per_window": steps,
            "timestep_fs": timestep_fs,
            "wall_s": time.perf_counter() - t0,
            "copy_restarts": restarts,
        },
    )
    for name in ("rpmd", "tst", "classical", "classical_tst"):
        k = ds[f"k_{name}"]
        ds[f"kie_{name}"] = k.sel(isotope="H") / k.sel(isotope="D")
    beta = 1.0 / (units.kB * ds["temperature"])
    err = ds["free_energy_barrier_err"]
    rel = beta * np.sqrt(err.sel(isotope="H") ** 2 + err.sel(isotope="D") ** 2)
    ds["kie_tst_err"] = ds["kie_tst"] * rel  # from the two PMFs' W(ξ‡) errors
    ds["kie_rpmd_err"] = ds["kie_rpmd"] * rel
    pmf_all = xr.merge([p.drop_attrs()[["pmf", "pmf_err"]] for p in pmfs], join="outer")
    ds["pmf"] = pmf_all["pmf"].reindex(xi=pmf_all["xi"])
    ds["pmf_err"] = pmf_all["pmf_err"]
    kap = xr.merge([k.drop_attrs() for k in kappas], join="outer")
    ds["kappa_t"] = kap["kappa"]
    return ds


def print_table(ds: xr.Dataset) -> None:
    """KIE(T) by every route, and the rates."""
    print(
        f"{'T/K':>5s} {'P':>3s} {'iso':>3s} {'k_RPMD/ps':>10s} {'k_TST':>10s} {'kappa':>6s} "
        f"{'k_cl':>10s} {'dW‡/kcal':>9s}"
    )
    for t in ds.temperature.values:
        for iso in ds.isotope.values:
            r = ds.sel(temperature=t, isotope=iso)
            print(
                f"{t:5.0f} {int(r.n_beads):3d} {iso:>3s} {float(r.k_rpmd):10.3e} "
                f"{float(r.k_tst):10.3e} {float(r.kappa):6.3f} {float(r.k_classical):10.3e} "
                f"{float(r.free_energy_barrier) * 23.0605:9.2f}"
            )
    print(f"{'T/K':>5s} {'KIE RPMD':>9s} {'TST':>7s} {'TI':>12s} {'classical':>9s}")
    for t in ds.temperature.values:
        r = ds.sel(temperature=t)
        print(
            f"{t:5.0f} {float(r.kie_rpmd):9.2f} {float(r.kie_tst):7.2f} "
            f"{float(r.kie_qtst_ti):6.2f}±{float(r.kie_qtst_ti_err):4.2f} {float(r.kie_classical):9.2f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("points", help="GFN2-xTB reactant, transition state, product")
    p.add_argument("--out", default=str(POINTS))
    g = sub.add_parser("grow", help="committee active learning with GFN2-xTB")
    g.add_argument("--workdir", required=True)
    g.add_argument("--iterations", type=int, default=8)
    g.add_argument("--budget", type=int, default=80)
    c = sub.add_parser("check", help="committee vs GFN2-xTB on its own PIMD beads")
    c.add_argument("--model", default=str(MODEL))
    c.add_argument("--temperatures", type=float, nargs="+", default=[200, 300, 500])
    c.add_argument("--samples", type=int, default=10)
    k = sub.add_parser("kie", help="H/D KIE(T) by RPMD, centroid TST, mass TI, classical")
    k.add_argument("--model", default=str(MODEL))
    k.add_argument("--out", required=True)
    k.add_argument("--temperatures", type=float, nargs="+", default=[200, 300, 500])
    k.add_argument("--steps", type=int, default=700)
    k.add_argument("--merge", nargs="+", help="merge these single-temperature tables instead")
    args = ap.parse_args(argv)
    if args.cmd == "points":
        import ase.io

        from nnp_lab._atomic import atomic_path

        pts = stationary_points()
        with atomic_path(args.out) as tmp:
            ase.io.write(tmp, pts, format="extxyz")
        for a in pts:
            print(
                f"{a.info['name']:18s} E = {a.info['energy_eV']:.5f} eV  xi = {a.info['xi']:+.3f} Å"
            )
        print(f"barrier {pts[1].info['barrier_eV'] * 23.0605:.2f} kcal/mol")
    elif args.cmd == "kie":
        from nnp_lab._atomic import atomic_write

        if args.merge:  # tables of single temperatures run in parallel → one table
            parts = [xr.load_dataset(f, engine="h5netcdf") for f in args.merge]
            ds = xr.concat(parts, "temperature", combine_attrs="drop_conflicts").sortby(
                "temperature"
            )
            for key in ("wall_s", "copy_restarts"):  # per-part totals add up
                ds.attrs[key] = sum(p.attrs[key] for p in parts)
        else:
            ds = malonaldehyde_kie(args.model, args.temperatures, steps=args.steps)
        atomic_write(args.out, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
        print_table(ds)
    elif args.cmd == "check":
        print(
            f"{'T/K':>5s} {'start':>16s} {'frames':>6s} {'F MAE':>7s} {'F RMSE':>7s} "
            f"{'E MAE/meV':>9s} {'max |F_ref|':>11s}"
        )
        for t in args.temperatures:
            for start in ("reactant", "transition_state"):
                r = bead_errors(args.model, t, beads_for(t), samples=args.samples, start=start)
                print(
                    f"{t:5.0f} {start:>16s} {r['frames']:6d} {r['force_mae']:7.3f} "
                    f"{r['force_rmse']:7.3f} {1000 * r['energy_mae']:9.1f} "
                    f"{r['max_reference_force']:11.2f}"
                )
    elif args.cmd == "grow":
        path = grow_potential(args.workdir, iterations=args.iterations, budget=args.budget)
        print(path)


if __name__ == "__main__":
    main()
