"""The headless end-to-end demo: EMT Cu data → trained potential → NVE MD with ASE.

Run with ``nnp-lab demo --out demo_out`` (or ``make demo``). Writes to the output folder:
``dataset.nc``, ``model.pt``, ``metrics.nc`` (training history), ``test_parity.nc``,
``parity.png``, ``nve.nc`` (energies along the MD), ``nve.traj`` and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from nnp_lab._atomic import atomic_write, atomic_write_text
from nnp_lab.data.build import DatasetBuildConfig, build_dataset
from nnp_lab.data.dataset import Dataset
from nnp_lab.training.config import TrainConfig
from nnp_lab.training.run import ModelSection, SplitConfig, TrainRunConfig, train_from_dataset

TARGETS = {"energy_mae": 5.0, "force_mae": 100.0, "nve_drift": 1.0}


def demo_dataset_config() -> DatasetBuildConfig:
    """The packaged Cu dataset recipe (``nnp_lab/resources/cu_demo_dataset.yaml``)."""
    text = resources.files("nnp_lab.resources").joinpath("cu_demo_dataset.yaml").read_text()
    return DatasetBuildConfig.model_validate(yaml.safe_load(text))


def demo_train_config(quick: bool = False) -> TrainRunConfig:
    """Model and training settings of the demo (``quick`` shortens training for tests)."""
    return TrainRunConfig(
        model=ModelSection(descriptor="metal", hidden=[64, 64], activation="celu"),
        training=TrainConfig(
            epochs=25 if quick else 120,
            batch_size=8,
            learning_rate=2e-3,
            energy_weight=1.0,
            force_weight=0.1,
            lr_patience=8,
            early_stopping_patience=25,
            dtype="float32",
            seed=0,
        ),
        split=SplitConfig(fractions=(0.8, 0.1, 0.1), seed=0),
    )


def run_nve(
    model_path: str | Path,
    atoms: Any,
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    seed: int = 0,
    record_every: int = 5,
    trajectory: str | Path | None = None,
) -> xr.Dataset:
    """NVE (velocity Verlet) MD with the potential through ASE; returns the energy record.

    The energy drift is the slope of a linear fit of the total energy against time, per
    atom (meV/atom/ps); it is stored in the result's attrs.
    """
    from ase import units
    from ase.io.trajectory import Trajectory
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    from nnp_lab.dynamics.calculator import NNPCalculator

    atoms = atoms.copy()
    atoms.calc = NNPCalculator(model_path, dtype="float64")
    rng = np.random.default_rng(seed)
    # start at 2T: in NVE about half the kinetic energy flows into the potential (equipartition)
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, 2 * temperature_K, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=2 * temperature_K, rng=rng)
    vd.Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    times, epot, ekin = [], [], []
    traj = Trajectory(str(trajectory), "w", atoms) if trajectory else None

    def record() -> None:
        times.append(dyn.get_number_of_steps() * timestep_fs / 1000.0)
        epot.append(atoms.get_potential_energy())
        ekin.append(atoms.get_kinetic_energy())
        if traj is not None and dyn.get_number_of_steps() % (record_every * 10) == 0:
            traj.write(atoms)

    dyn.attach(record, interval=record_every)
    dyn.run(steps)
    if traj is not None:
        traj.close()
    t = np.asarray(times)
    etot = np.asarray(epot) + np.asarray(ekin)
    n = len(atoms)
    slope = np.polyfit(t, etot, 1)[0]  # eV/ps
    out = xr.Dataset(
        {
            "potential_energy": ("time", np.asarray(epot), {"units": "eV"}),
            "kinetic_energy": ("time", np.asarray(ekin), {"units": "eV"}),
            "total_energy": ("time", etot, {"units": "eV"}),
            "temperature": ("time", np.asarray(ekin) / (1.5 * n * units.kB), {"units": "K"}),
        },
        coords={"time": ("time", t, {"units": "ps"})},
    )
    out.attrs.update(
        n_atoms=n,
        timestep_fs=timestep_fs,
        drift_meV_per_atom_per_ps=1000 * slope / n,
        max_deviation_meV_per_atom=1000 * float(np.max(np.abs(etot - etot[0]))) / n,
    )
    return out


def plot_parity(parity: xr.Dataset, path: str | Path) -> Path:
    """Energy-per-atom and force-component parity plots as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    e_ref = parity["energy_per_atom_ref"].values
    e_pred = parity["energy_per_atom_pred"].values
    f_ref = parity["forces_ref"].values.reshape(-1)
    f_pred = parity["forces_pred"].values.reshape(-1)
    for ax, ref, pred, unit, key, scale in (
        (axes[0], e_ref, e_pred, "eV/atom", "energy_mae", "meV/atom"),
        (axes[1], f_ref, f_pred, "eV/Å", "force_mae", "meV/Å"),
    ):
        ok = np.isfinite(ref) & np.isfinite(pred)
        ax.scatter(ref[ok], pred[ok], s=4, alpha=0.5)
        lo, hi = float(np.min(ref[ok])), float(np.max(ref[ok]))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"NNP ({unit})")
        ax.set_title(f"MAE {parity.attrs[key]:.2f} {scale}")
    fig.suptitle("nnp-lab demo: test-set parity (Cu, EMT reference)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return Path(path)


def run_demo(
    out_dir: str | Path = "demo_out", quick: bool = False, show_progress: bool = True
) -> dict[str, Any]:
    """Build the Cu dataset, train, evaluate, run 1 ps NVE; return (and save) the summary."""
    from ase.build import add_adsorbate, fcc111

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ds_config = demo_dataset_config()
    if quick:  # every structure type, fewer frames: ~80 structures
        for src in ds_config.sources:
            if src.kind == "md":
                src.frames, src.temperatures = 3, [300.0, 900.0]
            if src.kind == "rattle":
                src.n = 2
    ds_path = out / "dataset.nc"
    if ds_path.exists():
        dataset = Dataset.load(ds_path)
    else:
        dataset = build_dataset(ds_config, base_dir=out, show_progress=show_progress)
        dataset.save(ds_path)
    timings["dataset_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    run = train_from_dataset(
        dataset, demo_train_config(quick), out, resume=True, show_progress=show_progress
    )
    timings["training_s"] = time.perf_counter() - t1
    parity = xr.load_dataset(out / "test_parity.nc", engine="h5netcdf")
    plot_parity(parity, out / "parity.png")

    t2 = time.perf_counter()
    slab = fcc111("Cu", size=(3, 3, 4), vacuum=7.0)
    for offset in ((0, 0), (1, 0)):
        add_adsorbate(slab, "Cu", 2.0, position="fcc", offset=offset)
    nve = run_nve(
        out / "model.pt",
        slab,
        temperature_K=300.0,
        timestep_fs=1.0,
        steps=300 if quick else 1000,
        trajectory=out / "nve.traj",
    )
    atomic_write(out / "nve.nc", lambda tmp: nve.to_netcdf(tmp, engine="h5netcdf"))
    timings["md_s"] = time.perf_counter() - t2

    test = run.get("test", {})
    summary = {
        "dataset": dataset.summary(),
        "training": run,
        "test_energy_mae_meV_per_atom": test.get("energy_mae"),
        "test_force_mae_meV_per_A": test.get("force_mae"),
        "nve_drift_meV_per_atom_per_ps": nve.attrs["drift_meV_per_atom_per_ps"],
        "nve_max_deviation_meV_per_atom": nve.attrs["max_deviation_meV_per_atom"],
        "nve_atoms": int(nve.attrs["n_atoms"]),
        "targets": TARGETS,
        "timings_s": timings,
        "quick": quick,
    }
    summary["targets_met"] = {
        "energy_mae": bool(test.get("energy_mae", np.inf) < TARGETS["energy_mae"]),
        "force_mae": bool(test.get("force_mae", np.inf) < TARGETS["force_mae"]),
        "nve_drift": bool(abs(summary["nve_drift_meV_per_atom_per_ps"]) < TARGETS["nve_drift"]),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary
