"""Selection of frames to label: uncertainty threshold, then diversity by farthest points.

A fingerprint describes each structure in descriptor space: per species, the mean of the
standardised atomic descriptors (the overall environment), concatenated with the
descriptor of the atom whose forces the committee agrees on least (the local event that
made the frame uncertain — an adatom hop in a slab of 40 atoms barely moves the mean).
Among the candidates above the threshold, the most uncertain is taken first, then
repeatedly the one farthest (Euclidean) from everything taken so far, until the budget is
spent: one excursion cannot fill the budget with near-identical frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms

from nnp_lab.data.batch import Batch
from nnp_lab.errors import InputError


@torch.no_grad()
def fingerprints(
    potential: Any, structures: Sequence[Atoms], hot_atoms: Sequence[int] | None = None
) -> np.ndarray:
    """(S, 2·F·n_species … ) fingerprints of ``structures`` (see the module docstring).

    ``potential`` is a Potential or a Committee (its first member's descriptor and
    standardisation are used); ``hot_atoms[s]`` is the index of the most uncertain atom
    of structure ``s`` (default: atom 0).
    """
    pot = potential.members[0] if hasattr(potential, "members") else potential
    n_species = len(pot.species)
    feats = pot.descriptor.num_features
    out = np.zeros((len(structures), (n_species + 1) * feats))
    for s, atoms in enumerate(structures):
        batch = Batch.from_atoms(atoms, dtype=torch.float64, validate=False)
        pairs = batch.neighbors(pot.cutoff)
        sp = pot.species_index(batch.numbers).cpu()
        vec = (
            batch.positions[pairs.j]
            - batch.positions[pairs.i]
            + pairs.shifts @ batch.cell[0].to(batch.positions.dtype)
        )
        g = pot.descriptor(sp, vec, pairs.i, pairs.j)
        mean = pot.feature_mean.detach().cpu().double()
        std = pot.feature_std.detach().cpu().double()
        g = ((g - mean) / std).numpy()
        for k in range(n_species):
            rows = g[sp.numpy() == k]
            if len(rows):
                out[s, k * feats : (k + 1) * feats] = rows.mean(0)
        hot = int(hot_atoms[s]) if hot_atoms is not None else 0
        out[s, n_species * feats :] = g[hot]
    return out


def farthest_point_sampling(
    points: np.ndarray, count: int, first: int, existing: np.ndarray | None = None
) -> list[int]:
    """Greedy farthest-point order: ``first``, then each time the point farthest from all
    chosen ones (and from ``existing`` points, which are never chosen themselves)."""
    n = len(points)
    count = min(int(count), n)
    if count <= 0:
        return []
    chosen = [int(first)]
    dist = np.linalg.norm(points - points[first], axis=1)
    if existing is not None and len(existing):
        for e in existing:
            dist = np.minimum(dist, np.linalg.norm(points - e, axis=1))
    dist[first] = -np.inf
    while len(chosen) < count:
        nxt = int(np.argmax(dist))
        if not np.isfinite(dist[nxt]):
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
        dist[chosen] = -np.inf
    return chosen


def select_candidates(
    uncertainty: np.ndarray,
    fingerprints: np.ndarray,
    budget: int,
    threshold: float = 0.0,
    prefilter: int | None = None,
) -> list[int]:
    """Indices of at most ``budget`` candidates to label.

    Candidates with ``uncertainty > threshold`` qualify; if ``prefilter`` is given, only
    the ``prefilter`` most uncertain of them enter the diversity step. Farthest-point
    sampling in fingerprint space then picks ``budget``, starting from the most uncertain.
    """
    u = np.asarray(uncertainty, dtype=float)
    if u.ndim != 1 or len(u) != len(fingerprints):
        raise InputError("uncertainty and fingerprints must describe the same candidates")
    if budget < 0:
        raise InputError(f"budget must be >= 0, got {budget}")
    pool = np.flatnonzero(u > threshold)
    if prefilter is not None and len(pool) > prefilter:
        pool = pool[np.argsort(-u[pool], kind="stable")[:prefilter]]
    if len(pool) == 0 or budget == 0:
        return []
    x = np.asarray(fingerprints, dtype=float)[pool]
    scale = x.std(axis=0)
    x = x / np.where(scale > 0, scale, 1.0)
    first = int(np.argmax(u[pool]))
    return [int(pool[k]) for k in farthest_point_sampling(x, budget, first)]
