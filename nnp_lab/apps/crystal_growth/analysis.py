"""Lattice analysis of a film: coordination of every atom (12 = bulk-like)."""

from __future__ import annotations

import numpy as np

from nnp_lab.apps.crystal_growth.lattice import Surface


def coordination(grid: np.ndarray, surface: Surface) -> np.ndarray:
    """Occupied nearest-neighbour sites of every site of ``grid`` (layer, i, j); periodic
    in-plane, the lattice below layer 0 counted as full. Zero on empty sites."""
    occ = np.asarray(grid, dtype=np.int16)
    nz = occ.shape[0]
    out = np.zeros_like(occ)
    padded = np.concatenate([np.ones_like(occ[:1]), occ, np.zeros_like(occ[:1])])
    for dz, di, dj in surface.neighbours:
        shifted = np.roll(padded, shift=(-di, -dj), axis=(1, 2))
        out += shifted[1 + dz : 1 + dz + nz]
    return out * (occ > 0)
