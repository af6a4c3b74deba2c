"""The nnp-lab Cu potential for MD deposition: data, committee training, the shipped file.

The demo's Cu data (bulk, slabs, adatoms, islands, MD at 300–900 K) never show an atom
arriving from the vapour, so a potential trained on them alone binds an approaching atom
by 1 eV instead of EMT's 3 eV. Added here, all labelled with EMT:

- approach scans: an adatom placed from 1.4 to 7 Å above (100) and (111) slabs at hollow,
  bridge and top sites, and at random points above them, and the free atom, so the
  potential meets the vapour side;
- frames of EMT deposition runs (:mod:`.deposition`) on both facets: impacts, hot
  adatoms, small clusters.

A committee of three is trained (bootstrap resamples) so deposition with it reports the
force spread along the run.

    python -m nnp_lab.apps.crystal_growth.deposition_potential --out cu_deposition.pt
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from nnp_lab.apps.crystal_growth.barrier_data import RESOURCES
from nnp_lab.apps.crystal_growth.deposition import DepositionConfig, run_deposition
from nnp_lab.data.build import DatasetBuildConfig, build_dataset

SHIPPED = RESOURCES / "cu_deposition_committee.pt"
APPROACH_HEIGHTS = (1.4, 1.7, 2.0, 2.4, 2.8, 3.3, 3.9, 4.6, 5.5, 7.0)


def _approach_structures() -> list[dict]:
    out = []
    for facet, sites in (
        ("fcc100", ("hollow", "bridge", "ontop")),
        ("fcc111", ("fcc", "hcp", "ontop")),
    ):
        for site in sites:
            out.append(
                {
                    "surface": {"facet": facet, "symbol": "Cu", "size": [3, 3, 3], "vacuum": 9.0},
                    "adsorbates": [{"symbol": "Cu", "height": 1.8, "position": site}],
                    "name": f"{facet[3:]}-approach-{site}",
                }
            )
    return out


def deposition_frames(every: int = 40, seed: int = 0) -> list[Atoms]:
    """Snapshots of short EMT deposition runs on (100) and (111) (every ``every`` steps)."""
    from ase.calculators.emt import EMT

    frames: list[Atoms] = []

    def keep(atoms: Atoms, step: int) -> None:
        if step % every == 0:
            snap = atoms.copy()
            snap.calc = None
            snap.set_constraint()
            frames.append(snap)

    for k, (facet, energy) in enumerate((("100", 0.2), ("111", 0.2), ("100", 2.0))):
        cfg = DepositionConfig(
            facet=facet,
            size=3,
            substrate_layers=3,
            atoms=10,
            energy=energy,
            seed=seed + k,
            steps_per_atom=400,
            analyse_every=10,
        )
        run_deposition(cfg, EMT(), on_step=keep)
    return frames


def dataset_config(frames_file: str) -> DatasetBuildConfig:
    """The demo's Cu recipe plus approach scans and EMT deposition frames."""
    from nnp_lab.demo import demo_dataset_config

    cfg = demo_dataset_config().model_dump(mode="json", exclude_none=True)
    cfg["sources"] += [
        {"kind": "rattle", "n": 3, "stdev": 0.04, "structures": _approach_structures()},
        {"kind": "structures", "structures": [{"file": frames_file, "index": ":"}]},
    ]
    return DatasetBuildConfig.model_validate(cfg)


def approach_scan_structures() -> list[Atoms]:
    """Adatom above each slab site at :data:`APPROACH_HEIGHTS` (rigid, unlabelled)."""
    from nnp_lab.data.build import StructureSpec

    out = []
    for spec in _approach_structures():
        base = StructureSpec.model_validate(spec).build(Path("."))[0]
        top = base.positions[:-1, 2].max()
        for h in APPROACH_HEIGHTS:
            a = base.copy()
            a.positions[-1, 2] = top + h
            a.info["source"] = f"{spec['name']} h={h}"
            out.append(a)
    return out


def random_approach_structures(n: int = 40, seed: int = 0) -> list[Atoms]:
    """An adatom at ``n`` random points above each slab (lateral position uniform,
    height 1.5–6.5 Å, never closer than 2.0 Å to a slab atom), and the free atom."""
    from nnp_lab.data.build import StructureSpec

    rng = np.random.default_rng(seed)
    out = []
    for spec in _approach_structures()[::3]:  # one slab per facet
        base = StructureSpec.model_validate(spec).build(Path("."))[0]
        slab = base[:-1]
        top = slab.positions[:, 2].max()
        cell = slab.cell.array
        while sum(a.info["source"].startswith(spec["name"]) for a in out) < n:
            u, v = rng.random(2)
            p = u * cell[0] + v * cell[1] + [0.0, 0.0, top + rng.uniform(1.5, 6.5)]
            a = slab.copy()
            a.append("Cu")
            a.positions[-1] = p
            if min(a.get_distances(len(a) - 1, range(len(slab)), mic=True)) < 2.0:
                continue
            a.info["source"] = f"{spec['name']} random"
            out.append(a)
    for box in (10.0, 12.0, 14.0):  # the free atom: the zero of binding
        out.append(Atoms("Cu", positions=[[box / 2] * 3], cell=[box] * 3, pbc=True))
        out[-1].info["source"] = "free atom"
    return out


def train_deposition_potential(
    out: str | Path = SHIPPED,
    members: int = 3,
    epochs: int = 150,
    seed: int = 0,
    warm_start: str | Path | None = None,
    learning_rate: float | None = None,
) -> Path:
    """Generate the data (EMT), train the committee (or continue ``warm_start``'s
    training) and save it to ``out``."""
    from ase.io import write

    from nnp_lab.active.members import CommitteeConfig, train_committee
    from nnp_lab.data.dataset import Dataset
    from nnp_lab.data.labelers import EMTLabeler
    from nnp_lab.demo import demo_train_config

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = str(Path(tmp) / "deposition_frames.traj")
        write(frames_file, deposition_frames(seed=seed))
        base = build_dataset(dataset_config(frames_file), base_dir=tmp, show_progress=False)
        scans = Dataset.from_atoms(
            approach_scan_structures() + random_approach_structures(seed=seed)
        ).label(EMTLabeler(), show_progress=False)
        data = Dataset.concat([base, scans]).labelled()
    print(f"{len(data)} EMT structures in {time.time() - t0:.0f} s", flush=True)
    train, val = data.split((0.9, 0.1), seed=seed)
    run = demo_train_config()
    update = {"epochs": epochs, "seed": seed}
    if learning_rate is not None:
        update["learning_rate"] = learning_rate
    tcfg = run.training.model_copy(update=update)
    model = run.model.build(["Cu"])
    start = None
    if warm_start is not None:
        from nnp_lab.models.committee import Committee

        start = Committee.load(warm_start)
    committee, hist = train_committee(
        train,
        val,
        model,
        CommitteeConfig(size=members, seed=seed),
        tcfg,
        warm_start=start,
        show_progress=False,
    )
    out = Path(out)
    committee.save(out)
    e_mae = [round(float(np.nanmin(h["val_energy_mae"].values)), 2) for h in hist]
    f_mae = [round(float(np.nanmin(h["val_force_mae"].values)), 1) for h in hist]
    print(
        f"saved {out}: {len(data)} structures, {time.time() - t0:.0f} s; validation MAE "
        f"energy {e_mae} meV/atom, forces {f_mae} meV/Å"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="train the Cu deposition committee (EMT data)")
    ap.add_argument("--out", default=str(SHIPPED))
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--warm-start", help="continue training this committee (.pt)")
    ap.add_argument("--learning-rate", type=float, default=None)
    args = ap.parse_args(argv)
    train_deposition_potential(
        args.out,
        args.members,
        args.epochs,
        warm_start=args.warm_start,
        learning_rate=args.learning_rate,
    )


if __name__ == "__main__":
    main()
