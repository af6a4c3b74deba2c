"""Benchmark systems: periodic liquid-density water boxes of any size, built reproducibly."""

from __future__ import annotations

import numpy as np
from ase import Atoms

# one molecule per (3.104 Å)^3 = 29.9 Å^3: liquid water at 1.00 g/cm^3
SPACING = 3.104
_OH, _HOH = 0.9572, np.deg2rad(104.52)


def water_box(n_atoms: int, seed: int = 0) -> Atoms:
    """About ``n_atoms`` atoms (a multiple of 3) of water on a jittered cubic grid,
    molecules randomly oriented, periodic, liquid density."""
    n_side = max(1, round((n_atoms / 3) ** (1 / 3)))
    rng = np.random.default_rng(seed)
    m = n_side**3
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (grid + 0.5) * SPACING + rng.uniform(-0.15, 0.15, (m, 3))
    local = np.array(
        [
            [0.0, 0.0, 0.0],
            [_OH * np.sin(_HOH / 2), 0.0, _OH * np.cos(_HOH / 2)],
            [-_OH * np.sin(_HOH / 2), 0.0, _OH * np.cos(_HOH / 2)],
        ]
    )
    # random rotations from normalised quaternions
    q = rng.normal(size=(m, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    pos = np.einsum("mij,aj->mai", rot, local) + centres[:, None, :]
    numbers = np.tile([8, 1, 1], m)
    return Atoms(
        numbers=numbers, positions=pos.reshape(-1, 3), cell=np.eye(3) * SPACING * n_side, pbc=True
    )
