"""Grow a dimer scan where the committee disagrees most (query by committee).

    python -m nnp_lab.apps.hbond.active_scan --scan scans/formamide_dimer.nc \\
        --model model.pt --add 60 --pool 3000 --seed 8

A pool of random rigid-body placements is drawn around the scan's equilibrium (the
scan's own ``random`` family, with a new seed), the committee predicts their interaction
energies, and the ``add`` placements with the largest committee spread are labelled at
the scan's own reference level and appended as the ``active`` family. Two rules keep the
choice useful: placements the committee puts above ``max_energy`` are skipped (the
repulsive wall weighs little in training and is rarely visited), and a placement closer
than ``min_separation`` (RMS atom displacement) to one already chosen is skipped, so the
labels do not pile up in one disagreeing pocket. Active points are a biased sample, so
:func:`~nnp_lab.apps.hbond.model.held_out_split` always puts them in training and the
held-out test stays a random sample of the scan.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from nnp_lab.apps.hbond.dimer_data import append_points, load_scan, random_candidates
from nnp_lab.apps.hbond.model import ACTIVE_FAMILY, interaction_energies
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee


def spread_selection(
    candidates: Sequence[Atoms],
    mean: np.ndarray,
    std: np.ndarray,
    n: int,
    max_energy: float = 5.0,
    min_separation: float = 0.5,
) -> np.ndarray:
    """Indices of ``n`` candidates, greedily by decreasing committee ``std`` (kcal/mol),
    skipping those with ``mean`` above ``max_energy`` (kcal/mol) and those within
    ``min_separation`` (Å, RMS over atoms; same atom order) of one already chosen."""
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    if not (len(candidates) == len(mean) == len(std)):
        raise InputError("candidates, mean and std must have one entry per candidate")
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    pos = np.stack([c.positions for c in candidates]) if len(candidates) else np.zeros((0,))
    chosen: list[int] = []
    for k in np.argsort(-std, kind="stable"):
        if len(chosen) == n:
            break
        if not mean[k] <= max_energy:
            continue
        if chosen:
            rms = np.sqrt(((pos[chosen] - pos[k]) ** 2).sum(-1).mean(-1))
            if rms.min() < min_separation:
                continue
        chosen.append(int(k))
    if len(chosen) < n:
        raise InputError(
            f"only {len(chosen)} of {len(candidates)} candidates lie below {max_energy} "
            f"kcal/mol and {min_separation} Å apart; draw a larger pool or lower min_separation"
        )
    return np.array(chosen)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extend_by_spread(
    path: str | os.PathLike,
    model: str | os.PathLike,
    n_add: int,
    seed: int,
    pool: int = 2000,
    max_energy: float = 5.0,
    min_separation: float = 0.5,
    cache: str | os.PathLike | None = None,
    n_workers: int = 1,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Append the ``n_add`` placements of a ``pool`` of random ones (drawn with ``seed``)
    on which the committee in ``model`` disagrees most (see :func:`spread_selection`),
    labelled at the scan's reference level, as the ``active`` family. Returns what
    :func:`~nnp_lab.apps.hbond.dimer_data.append_points` returns plus the spread of the
    chosen placements (``spread``, kcal/mol) and of the whole pool (``pool_spread``)."""
    path, model = Path(path), Path(model)
    if pool < n_add:
        raise InputError(f"pool ({pool}) must be at least n_add ({n_add})")
    if not model.exists():
        raise InputError(
            f"no committee at {model}; train one with python -m nnp_lab.apps.hbond.train"
        )
    scan = load_scan(path)
    candidates = random_candidates(scan, pool, seed)
    pred = interaction_energies(Committee.load(model), candidates)
    pick = spread_selection(
        candidates, pred["mean"], pred["std"], n_add, max_energy, min_separation
    )
    chosen = []
    for k in pick:
        atoms = candidates[int(k)].copy()
        atoms.info["family"] = ACTIVE_FAMILY
        chosen.append(atoms)
    record = {
        "seed": seed,
        "select": "committee spread",
        "pool": len(candidates),
        "n_random": pool,
        "max_energy": max_energy,
        "min_separation": min_separation,
        "model": model.name,
        "model_sha256": _sha256(model),
    }
    out = append_points(
        path, chosen, record, cache=cache, n_workers=n_workers, show_progress=show_progress
    )
    out.update(spread=pred["std"][pick], pool_spread=pred["std"])
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", required=True, help="the <dimer>.nc scan to grow (in place)")
    ap.add_argument("--model", required=True, help="committee (.pt) trained on the scans")
    ap.add_argument("--add", type=int, required=True, help="placements to label")
    ap.add_argument("--seed", type=int, required=True, help="seed of the pool (a new one)")
    ap.add_argument("--pool", type=int, default=2000, help="random placements to rank")
    ap.add_argument("--max-energy", type=float, default=5.0, help="kcal/mol; skip above")
    ap.add_argument("--min-separation", type=float, default=0.5, help="Å RMS between picks")
    ap.add_argument("--cache", default=None, help="SQLite label cache (default beside scan)")
    ap.add_argument("--workers", type=int, default=1, help="Dask worker processes")
    args = ap.parse_args(argv)
    r = extend_by_spread(
        args.scan,
        args.model,
        args.add,
        args.seed,
        pool=args.pool,
        max_energy=args.max_energy,
        min_separation=args.min_separation,
        cache=args.cache,
        n_workers=args.workers,
    )
    print(
        f"{r['added']} placements added ({r['computed']} computed), {r['points']} in all → "
        f"{r['path']}; committee spread of the chosen {np.min(r['spread']):.2f}–"
        f"{np.max(r['spread']):.2f} kcal/mol (pool median {np.median(r['pool_spread']):.2f})"
    )


if __name__ == "__main__":
    main()
