"""Label efficiency of committee active learning vs random selection, on real references.

    python -m benchmarks.active_learning --system cu       # Cu slabs + adatoms, EMT
    python -m benchmarks.active_learning --system water    # water clusters, GFN2-xTB
    python -m benchmarks.active_learning --system cu --rounds 8 --budget 8 --docs

The candidate pool imitates an MD campaign: Langevin trajectories driven by the reference,
mostly at 300 K with shorter runs at higher temperature, frames every few steps (so many
are near-duplicates). Both strategies start from the same seed labels and committee and
buy ``budget`` labels per round from the pool; the test set samples every start structure
and temperature evenly with independent trajectories. Prints a table, writes
``benchmarks/results/al-efficiency-<system>-<stamp>.nc`` and a PNG of test force RMSE vs
labels; ``--docs`` updates ``docs/active_learning.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def cu_system() -> dict[str, Any]:
    from ase.build import add_adsorbate, fcc100, fcc111

    from nnp_lab.data import EMTLabeler

    a = fcc100("Cu", size=(3, 3, 3), vacuum=6.0)
    add_adsorbate(a, "Cu", 1.7, "hollow")
    b = fcc111("Cu", size=(3, 3, 3), vacuum=6.0)
    add_adsorbate(b, "Cu", 2.0, "fcc")
    c = fcc100("Cu", size=(3, 3, 3), vacuum=6.0)
    add_adsorbate(c, "Cu", 1.7, "hollow", offset=(0, 0))
    add_adsorbate(c, "Cu", 1.7, "hollow", offset=(1, 0))
    return {
        "labeler": EMTLabeler(),
        "starts": {"100-adatom": a, "111-adatom": b, "100-dimer": c},
        "temperatures": {300.0: 60, 600.0: 25, 900.0: 15},  # pool frames per start
        "timestep_fs": 2.0,
        "descriptor": "metal",
    }


def water_system() -> dict[str, Any]:
    from ase.build import molecule

    from nnp_lab.data import XTBLabeler

    def ring(n: int, radius: float) -> Atoms:
        out = Atoms()
        for k in range(n):
            w = molecule("H2O")
            w.rotate(360.0 * k / n + 90.0, "z")
            phi = 2 * np.pi * k / n
            w.translate([radius * np.cos(phi), radius * np.sin(phi), 0.0])
            out += w
        return out

    return {
        "labeler": XTBLabeler(method="GFN2-xTB"),
        "starts": {"trimer": ring(3, 1.7), "tetramer": ring(4, 2.0)},
        "temperatures": {300.0: 60, 450.0: 25, 600.0: 15},
        "timestep_fs": 0.5,
        "descriptor": "ani1x",
    }


def md_frames(
    start: Atoms,
    labeler: Any,
    temperature: float,
    n: int,
    interval: int,
    timestep_fs: float,
    seed: int,
    tag: str,
) -> list[Atoms]:
    from nnp_lab.data import samplers

    frames = samplers.md_snapshots(
        start,
        labeler,
        temperature_K=temperature,
        n_frames=n,
        interval=interval,
        timestep_fs=timestep_fs,
        friction=0.02,
        seed=seed,
        equilibration_steps=20,
    )
    for f in frames:
        f.info["source"] = f"{tag} {temperature:.0f} K"
    return frames


def build(system: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Pool (labels hidden until bought), seed set, validation and test sets."""
    from nnp_lab.data.dataset import Dataset

    lab, dt_fs = system["labeler"], system["timestep_fs"]
    scale = 0.4 if quick else 1.0
    pool, seed, val, test = [], [], [], []
    for s, (tag, atoms) in enumerate(system["starts"].items()):
        temps = list(system["temperatures"])
        for t_index, (temp, n) in enumerate(system["temperatures"].items()):
            pool += md_frames(
                atoms, lab, temp, max(2, int(n * scale)), 5, dt_fs, 10 * s + t_index, tag
            )
            test += md_frames(
                atoms, lab, temp, 8 if not quick else 3, 40, dt_fs, 1000 + 10 * s + t_index, tag
            )
        seed += md_frames(atoms, lab, temps[0], 3, 25, dt_fs, 5000 + s, tag)
        val += md_frames(atoms, lab, temps[1], 2, 25, dt_fs, 6000 + s, tag)
    for f in pool:  # geometry only: the oracle labels what a strategy buys
        f.calc = None
        f.info.pop("method", None)
    return {
        "pool": pool,
        "seed": Dataset.from_atoms(seed),
        "val": Dataset.from_atoms(val),
        "test": Dataset.from_atoms(test),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", choices=["cu", "water"], default="cu")
    p.add_argument("--budget", type=int, default=8)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    p.add_argument("--epochs", type=int, default=60, help="initial training epochs")
    p.add_argument("--retrain-epochs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2, help="Dask LocalCluster workers")
    p.add_argument("--quick", action="store_true", help="small pool and test set (smoke run)")
    p.add_argument("--docs", action="store_true", help="update docs/active_learning.md")
    args = p.parse_args(argv)

    from nnp_lab.active.efficiency import label_efficiency, plot_efficiency
    from nnp_lab.active.members import CommitteeConfig
    from nnp_lab.active.oracle import DaskOracle
    from nnp_lab.models.descriptor import DescriptorConfig
    from nnp_lab.models.potential import ModelConfig
    from nnp_lab.training.config import TrainConfig

    system = cu_system() if args.system == "cu" else water_system()
    t0 = time.perf_counter()
    sets = build(system, args.quick)
    t_build = time.perf_counter() - t0
    species = sets["seed"].species
    model = ModelConfig(
        species=species,
        descriptor=DescriptorConfig.preset(system["descriptor"]),
        hidden=args.hidden,
    )
    training = TrainConfig(
        epochs=args.epochs,
        batch_size=8,
        learning_rate=3e-3,
        lr_patience=8,
        early_stopping_patience=30,
        seed=0,
    )
    retraining = training.model_copy(
        update={"epochs": args.retrain_epochs, "learning_rate": 1.5e-3}
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = RESULTS / f"al-work-{args.system}-{stamp}"
    t1 = time.perf_counter()
    with DaskOracle(
        system["labeler"], cache=work / "labels.sqlite", config={"n_workers": args.workers}
    ) as oracle:
        res = label_efficiency(
            sets["pool"],
            sets["seed"],
            sets["val"],
            sets["test"],
            oracle,
            model,
            CommitteeConfig(size=args.members, seed=0),
            training,
            retraining,
            budget=args.budget,
            rounds=args.rounds,
            workdir=work,
            progress=lambda e: print(
                f"{e['strategy']:>6} round {e['round']}: {e['labels']} labels, "
                f"test force RMSE {e['force_rmse']:.1f} meV/Å",
                flush=True,
            ),
        )
    res.attrs.update(
        system=args.system,
        seconds_build=t_build,
        seconds_study=time.perf_counter() - t1,
        members=args.members,
        hidden=json.dumps(args.hidden),
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    nc = RESULTS / f"al-efficiency-{args.system}-{stamp}.nc"
    res.to_netcdf(nc, engine="h5netcdf")
    png = plot_efficiency(
        res,
        RESULTS / f"al-efficiency-{args.system}-{stamp}.png",
        title=f"{args.system} ({system['labeler'].method})",
    )
    md = table(res)
    print()
    print(md)
    print(f"\nresults: {nc}, plot: {png}")
    if args.docs:
        write_docs(args, res, md, png)
    return 0


def table(res: Any) -> str:
    lines = [
        "| labels | " + " | ".join(f"{s} force RMSE (meV/Å)" for s in res.strategy.values) + " |",
        "|---:|" + "---:|" * res.sizes["strategy"],
    ]
    for r in res["round"].values:
        n = int(res["n_labels"].isel(strategy=0, round=r))
        vals = " | ".join(
            f"{float(res['force_rmse'].sel(strategy=s, round=r)):.1f}" for s in res.strategy.values
        )
        lines.append(f"| {n} | {vals} |")
    a = res.attrs
    lines.append("")
    lines.append(
        f"Active learning reached random selection's final force RMSE "
        f"({a.get('random_final_force_rmse', float('nan')):.1f} meV/Å after "
        f"{a.get('random_labels', float('nan')):.0f} labels) with "
        f"{a.get('active_labels_to_match', float('nan')):.1f} labels: "
        f"{a.get('labels_ratio', float('nan')):.2f}× the selected labels. "
        "Spearman ρ between committee spread and true force error per test structure "
        "(final committees; max over atoms / RMS over atoms): "
        + ", ".join(
            f"{s} {float(a):.2f} / {float(b):.2f}"
            for s, a, b in zip(
                res.strategy.values,
                res["test_spearman_rho"].values,
                res["test_spearman_rho_rms"].values,
            )
        )
        + "."
    )
    return "\n".join(lines)


def write_docs(args: Any, res: Any, md: str, png: Path) -> None:
    path = ROOT / "docs" / "active_learning.md"
    text = path.read_text() if path.exists() else "# Active learning: label efficiency\n"
    marker_start = f"<!-- {args.system}:start -->"
    marker_end = f"<!-- {args.system}:end -->"
    block = (
        f"{marker_start}\n## {args.system} ({res.attrs['method']})\n\n"
        f"Command: `python -m benchmarks.active_learning --system {args.system} --rounds {args.rounds} "
        f"--budget {args.budget} --members {args.members} --epochs {args.epochs} "
        f"--retrain-epochs {args.retrain_epochs} --hidden {' '.join(map(str, args.hidden))}`; pool {res.attrs['pool_size']} frames, "
        f"{res.attrs['seed_labels']} seed labels, {res.attrs['test_structures']} test structures "
        f"(reference force RMS {res.attrs.get('test_force_rms', float('nan')):.0f} meV/Å); "
        f"{res.attrs['seconds_study'] / 60:.0f} min on 2 CPU cores. Plot: `{png.relative_to(ROOT)}`.\n\n"
        f"{md}\n{marker_end}"
    )
    if marker_start in text:
        head, rest = text.split(marker_start, 1)
        text = head + block + rest.split(marker_end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
