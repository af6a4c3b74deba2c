"""Liquid water with an nnp-lab potential: grown by active learning, then NVT MD.

1. :func:`liquid_al_config` + :func:`grow_water_potential`: committee active learning
   (:class:`~nnp_lab.active.loop.ActiveLearner`) on periodic boxes of 32 waters labelled
   with GFN2-xTB (tblite, periodic). Seed data are random packings at 0.95–1.05 g/cm³ and
   rattled copies; explorers run Langevin MD on the committee mean at 300–400 K and queue
   the frames where the members disagree. Every label is cached: a killed run resumes.
2. :func:`run_liquid_md`: NVT MD (Bussi stochastic velocity rescaling, ASE) of ≥ 500
   molecules at the experimental density with the committee mean; frames every
   ``sample_fs`` with the committee's force spread (how far the run left the training
   data). Checkpointed: a killed run continues from its last checkpoint.
3. The analysis (O–O RDF, H-bonds per molecule, lifetimes) is in
   :mod:`nnp_lab.apps.hbond.liquid_analysis`.

Command line::

    python -m nnp_lab.apps.hbond.liquid grow --workdir water_al        # AL with GFN2-xTB
    python -m nnp_lab.apps.hbond.liquid md --model water_al/iter_007/committee.pt \\
        --molecules 512 --out liquid_traj.nc
    python -m nnp_lab.apps.hbond.liquid analyse liquid_traj.nc --out liquid.nc
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms, units
from tqdm.auto import tqdm

from nnp_lab._atomic import atomic_path, atomic_write
from nnp_lab.apps.hbond.water_box import DENSITY_298K, density_of, water_box
from nnp_lab.dynamics.calculator import calculator_for, load_model
from nnp_lab.errors import InputError

#: starting boxes of the active-learning run: (density g/cm³, seed)
AL_BOXES = ((0.95, 0), (1.0, 1), (1.05, 2), (0.95, 3), (1.0, 4), (1.05, 5))


def liquid_al_config(
    workdir: str | os.PathLike,
    n_molecules: int = 32,
    iterations: int = 7,
    budget: int = 24,
    n_workers: int = 2,
) -> dict[str, Any]:
    """The active-learning config for liquid water (GFN2-xTB); writes the start boxes
    to ``workdir/starts.extxyz`` and returns the config dict (``workdir`` absolute)."""
    import ase.io

    wd = Path(workdir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    starts = [water_box(n_molecules, density=rho, seed=s) for rho, s in AL_BOXES]
    for a, (rho, s) in zip(starts, AL_BOXES):
        a.info["source"] = f"{n_molecules} H2O, {rho} g/cm3, seed {s}"
    with atomic_path(wd / "starts.extxyz") as tmp:
        ase.io.write(tmp, starts, format="extxyz")
    boxes = [{"file": str(wd / "starts.extxyz"), "index": ":", "name": "water box"}]
    return {
        "workdir": str(wd),
        "labeler": {"kind": "xtb", "method": "GFN2-xTB"},
        "cache": "labels.sqlite",
        "initial": [
            {"kind": "structures", "structures": boxes},
            {"kind": "rattle", "n": 2, "stdev": 0.06, "structures": boxes},
        ],
        "starts": boxes,
        "model": {"descriptor": "ani1x", "hidden": [64, 64]},
        "committee": {"size": 4, "bootstrap": True, "seed": 0},
        "training": {"epochs": 100, "batch_size": 4, "learning_rate": 0.003, "lr_patience": 10},
        "retraining": {"epochs": 15, "batch_size": 8, "learning_rate": 0.001},
        "validation_fraction": 0.15,
        "explore": {
            "temperatures": [300.0, 400.0],
            "steps": 300,
            "timestep_fs": 0.5,
            "friction": 0.01,
            "sample_every": 10,
            "threshold": 0.15,
            "hard_limit": 1.5,
            "max_restarts": 3,
            "min_distance": 0.7,
        },
        "select": {"budget": budget},
        "oracle": {"n_workers": n_workers},
        "stop": {"max_iterations": iterations},
        "seed": 0,
    }


def grow_water_potential(
    workdir: str | os.PathLike,
    progress: Callable[[dict[str, Any]], None] | None = None,
    **config: Any,
) -> Path:
    """Run (or resume) the liquid-water active learning; returns the final committee's path."""
    from nnp_lab.active.loop import ActiveLearner

    learner = ActiveLearner(liquid_al_config(workdir, **config), progress=progress)
    learner.run()
    k = int(learner.state()["iteration"])
    return learner.iter_dir(k) / "committee.pt"


# ---------------------------------------------------------------------------- MD
def run_liquid_md(
    model: Any,
    out: str | os.PathLike,
    n_molecules: int = 512,
    density: float = DENSITY_298K,
    temperature_K: float = 300.0,
    timestep_fs: float = 0.5,
    equilibration_ps: float = 2.0,
    production_ps: float = 6.0,
    sample_fs: float = 10.0,
    taut_fs: float = 100.0,
    seed: int = 0,
    start: Atoms | None = None,
    checkpoint_every: int = 500,
    progress: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
) -> xr.Dataset:
    """NVT MD of liquid water; writes the production trajectory to ``out`` (netCDF).

    The box is :func:`~nnp_lab.apps.hbond.water_box.water_box` (or ``start``), velocities
    Maxwell–Boltzmann at ``temperature_K``; the Bussi thermostat (time constant
    ``taut_fs``) samples the canonical ensemble while disturbing the dynamics little, so
    the H-bond lifetimes of the production part are meaningful. Frames are stored every
    ``sample_fs`` of the production part: positions (frame, atom, xyz) in float32, time,
    potential energy, temperature and, for a committee, the largest force spread.

    Every ``checkpoint_every`` steps the state (positions, velocities, step, frames so far)
    goes to ``out.partial.nc`` atomically; calling again with the same arguments resumes
    from it (the thermostat's random stream restarts from ``(seed, step)``).
    """
    from ase.md.bussi import Bussi
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    out = Path(out)
    if timestep_fs <= 0 or sample_fs < timestep_fs:
        raise InputError(f"need 0 < timestep_fs ≤ sample_fs, got {timestep_fs}, {sample_fs}")
    if equilibration_ps < 0 or production_ps <= 0:
        raise InputError("equilibration_ps must be ≥ 0 and production_ps > 0")
    every = max(1, round(sample_fs / timestep_fs))
    n_eq = round(equilibration_ps * 1000 / timestep_fs)
    n_prod = round(production_ps * 1000 / timestep_fs) // every * every
    total = n_eq + n_prod
    model = load_model(model)
    if start is not None:
        if not start.pbc.all() or start.cell.rank < 3:
            raise InputError("start must be a periodic box (pbc all True, three cell vectors)")
        n_molecules = len(start) // 3
        density = density_of(start)
    settings = {
        "n_molecules": n_molecules,
        "density_g_cm3": density,
        "temperature_K": temperature_K,
        "timestep_fs": timestep_fs,
        "equilibration_ps": equilibration_ps,
        "production_ps": production_ps,
        "sample_fs": every * timestep_fs,
        "taut_fs": taut_fs,
        "seed": seed,
        "thermostat": "Bussi (ase.md.bussi)",
    }
    partial = out.with_name(out.name + ".partial.nc")
    frames: dict[str, list[Any]] = {k: [] for k in ("pos", "t", "epot", "temp", "spread")}
    step = 0
    if partial.exists():
        with xr.open_dataset(partial, engine="h5netcdf") as ck:
            ck = ck.load()
        if json.loads(ck.attrs["settings"]) != settings:
            raise InputError(f"{partial} belongs to a run with other settings: delete it")
        atoms = Atoms(
            numbers=ck["numbers"].values,
            positions=ck["state_positions"].values,
            cell=ck["cell"].values,
            pbc=True,
        )
        atoms.set_velocities(ck["state_velocities"].values)
        step = int(ck.attrs["step"])
        if ck.sizes.get("frame", 0):
            frames["pos"] = list(ck["positions"].values)
            frames["t"] = list(ck["time"].values)
            frames["epot"] = list(ck["potential_energy"].values)
            frames["temp"] = list(ck["temperature"].values)
            frames["spread"] = list(ck["max_force_spread"].values)
    else:
        atoms = (
            start.copy()
            if start is not None
            else water_box(n_molecules, density=density, seed=seed)
        )
        MaxwellBoltzmannDistribution(
            atoms, temperature_K=temperature_K, rng=np.random.default_rng([seed, 0])
        )
        Stationary(atoms)
    atoms.calc = calculator_for(model)
    dyn = Bussi(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        taut=taut_fs * units.fs,
        rng=np.random.default_rng([seed, step, 1]),
    )

    def state(final: bool = False) -> xr.Dataset:
        n_f = len(frames["t"])
        pos = (
            np.asarray(frames["pos"], dtype=np.float32)
            if n_f
            else np.zeros((0, len(atoms), 3), np.float32)
        )
        ds = xr.Dataset(
            {
                "positions": (("frame", "atom", "xyz"), pos, {"units": "Å"}),
                "time": ("frame", np.asarray(frames["t"], float), {"units": "ps"}),
                "potential_energy": ("frame", np.asarray(frames["epot"], float), {"units": "eV"}),
                "temperature": ("frame", np.asarray(frames["temp"], float), {"units": "K"}),
                "max_force_spread": (
                    "frame",
                    np.asarray(frames["spread"], float),
                    {
                        "units": "eV/Å",
                        "long_name": "largest committee force spread (NaN: one model)",
                    },
                ),
                "numbers": ("atom", atoms.numbers.astype(np.int64)),
                "cell": (
                    ("cell_vector", "xyz"),
                    np.asarray(atoms.cell.array, float),
                    {"units": "Å"},
                ),
            },
            attrs={
                "settings": json.dumps(settings),
                "step": step,
                "description": "NVT MD of liquid water with an nnp-lab potential",
            },
        )
        if not final:
            ds["state_positions"] = (("atom", "xyz"), atoms.positions.copy())
            ds["state_velocities"] = (("atom", "xyz"), atoms.get_velocities())
        return ds

    bar = tqdm(
        total=total,
        initial=step,
        desc=f"liquid MD ({len(atoms)} atoms)",
        disable=not show_progress,
        unit="step",
    )
    t0 = time.perf_counter()
    while step < total:
        dyn.run(1)
        step += 1
        bar.update(1)
        if not np.isfinite(atoms.positions).all():
            raise InputError(f"MD blew up at step {step}: the potential left its data")
        if step > n_eq and (step - n_eq) % every == 0:
            frames["pos"].append(atoms.get_positions(wrap=True).astype(np.float32))
            frames["t"].append((step - n_eq) * timestep_fs / 1000.0)
            frames["epot"].append(atoms.get_potential_energy())
            frames["temp"].append(atoms.get_temperature())
            frames["spread"].append(atoms.calc.results.get("max_force_spread", np.nan))
        if step % checkpoint_every == 0 or step == total:
            atomic_write(partial, lambda tmp: state().to_netcdf(tmp, engine="h5netcdf"))
            if progress is not None:
                progress(
                    {
                        "stage": "md",
                        "step": step,
                        "steps": total,
                        "temperature_K": atoms.get_temperature(),
                        "elapsed_s": time.perf_counter() - t0,
                    }
                )
    bar.close()
    ds = state(final=True)
    ds.attrs["wall_s_last_leg"] = time.perf_counter() - t0
    atomic_write(out, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    partial.unlink(missing_ok=True)
    return ds


def check_against_reference(
    model: Any,
    n_molecules: int = 32,
    n_frames: int = 6,
    seed: int = 11,
    labeler: Any = None,
) -> dict[str, Any]:
    """Errors of ``model`` against GFN2-xTB on liquid frames its own 300 K MD visits
    (a fresh box, 1 ps equilibration, then a frame every 50 fs): energy MAE (meV/atom),
    force MAE/RMSE (meV/Å), and the committee's largest force spread on those frames."""
    import tempfile

    from nnp_lab.data.labelers import XTBLabeler

    lab = labeler or XTBLabeler("GFN2-xTB")
    model = load_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        traj = run_liquid_md(
            model,
            Path(tmp) / "check.nc",
            n_molecules=n_molecules,
            equilibration_ps=1.0,
            production_ps=0.05 * n_frames,
            sample_fs=50.0,
            seed=seed,
            show_progress=False,
        )
    calc = calculator_for(model)
    de, df, spread = [], [], []
    for a in frames_of(traj):
        ref = lab.label(a)
        if not ref.ok:
            raise InputError(f"reference failed on a liquid frame: {ref.error}")
        a.calc = calc
        de.append((a.get_potential_energy() - ref.energy) / len(a))
        df.append(a.get_forces() - ref.forces)
        spread.append(a.calc.results.get("max_force_spread", np.nan))
    df_all = np.concatenate(df)
    return {
        "energy_mae_mev_atom": 1000 * float(np.mean(np.abs(de))),
        "force_mae_mev_a": 1000 * float(np.mean(np.abs(df_all))),
        "force_rmse_mev_a": 1000 * float(np.sqrt(np.mean(df_all**2))),
        "max_force_spread_ev_a": float(np.nanmax(spread)) if spread else float("nan"),
        "frames": len(de),
        "n_molecules": n_molecules,
        "reference": "GFN2-xTB (tblite)",
    }


def load_trajectory(path: str | os.PathLike) -> xr.Dataset:
    """A trajectory written by :func:`run_liquid_md`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no trajectory at {path}")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        if "positions" not in ds or "cell" not in ds:
            raise InputError(f"{path} is not a liquid MD trajectory (no positions/cell)")
        return ds.load()


def frames_of(traj: xr.Dataset, index: Sequence[int] | slice = slice(None)) -> list[Atoms]:
    """Frames of a trajectory as ``ase.Atoms`` (periodic)."""
    numbers = traj["numbers"].values
    cell = traj["cell"].values
    pos = traj["positions"].values[index]
    return [Atoms(numbers=numbers, positions=p, cell=cell, pbc=True) for p in pos]


# ---------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grow", help="active learning of a water potential with GFN2-xTB")
    g.add_argument("--workdir", required=True)
    g.add_argument("--iterations", type=int, default=7)
    g.add_argument("--budget", type=int, default=24)
    g.add_argument("--workers", type=int, default=2)
    m = sub.add_parser("md", help="NVT MD of liquid water")
    m.add_argument("--model", required=True, help="committee.pt or a potential file")
    m.add_argument("--out", required=True)
    m.add_argument("--molecules", type=int, default=512)
    m.add_argument("--temperature", type=float, default=300.0)
    m.add_argument("--equilibration-ps", type=float, default=2.0)
    m.add_argument("--production-ps", type=float, default=6.0)
    m.add_argument("--timestep-fs", type=float, default=0.5)
    m.add_argument("--sample-fs", type=float, default=10.0)
    m.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("analyse", help="RDF, H-bonds per molecule, lifetimes → netCDF")
    a.add_argument("trajectory")
    a.add_argument("--out", required=True)
    a.add_argument(
        "--check-model",
        default=None,
        help="also measure this model's errors against GFN2-xTB on liquid frames",
    )
    a.add_argument(
        "--frames-out",
        default=None,
        help="write every n-th frame (--frames-every) here: a small trajectory",
    )
    a.add_argument("--frames-every", type=int, default=30)
    args = ap.parse_args(argv)
    if args.cmd == "grow":
        path = grow_water_potential(
            args.workdir, iterations=args.iterations, budget=args.budget, n_workers=args.workers
        )
        print(f"committee → {path}")
    elif args.cmd == "md":
        ds = run_liquid_md(
            args.model,
            args.out,
            n_molecules=args.molecules,
            temperature_K=args.temperature,
            equilibration_ps=args.equilibration_ps,
            production_ps=args.production_ps,
            timestep_fs=args.timestep_fs,
            sample_fs=args.sample_fs,
            seed=args.seed,
        )
        print(f"{ds.sizes['frame']} frames → {args.out} ({ds.attrs['wall_s_last_leg']:.0f} s)")
    else:
        from nnp_lab.apps.hbond.liquid_analysis import analyse, summary

        traj = load_trajectory(args.trajectory)
        res = analyse(traj)
        if args.check_model:
            res.attrs["model_errors"] = json.dumps(check_against_reference(args.check_model))
        atomic_write(args.out, lambda tmp: res.to_netcdf(tmp, engine="h5netcdf"))
        if args.frames_out:
            frames = traj.isel(frame=slice(None, None, args.frames_every))
            atomic_write(args.frames_out, lambda tmp: frames.to_netcdf(tmp, engine="h5netcdf"))
        print(json.dumps(summary(res), indent=2))


if __name__ == "__main__":
    main()
