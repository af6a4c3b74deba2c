"""Periodic boxes of liquid water: rigid G2 molecules packed at a chosen density.

Molecules are inserted one at a time at uniformly random positions and orientations
(random sequential addition) and kept only where they clash with nothing already placed
(minimum-image distances): O···O ≥ ``min_oo``, any intermolecular O···H or H···H ≥
``min_h``. At water's density random addition with the default limits fills a box of
32 or 512 molecules in well under a second; where it jams by chance, the box starts
again from a derived seed. The result is a disordered starting point, not an equilibrated liquid: MD with
a potential relaxes it (``liquid.run_liquid_md`` equilibrates before it samples).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.units import _amu

from nnp_lab.errors import InputError

WATER_MASS_AMU = 18.01528  #: g/mol of H2O (ASE's standard atomic weights)
DENSITY_298K = 0.99705  #: g/cm³, liquid water at 298.15 K and 1 bar


def box_length(n_molecules: int, density: float = DENSITY_298K) -> float:
    """Edge (Å) of the cubic box holding ``n_molecules`` waters at ``density`` g/cm³."""
    if n_molecules < 1:
        raise InputError(f"need at least one molecule, got {n_molecules}")
    if not (0.1 <= density <= 2.0):
        raise InputError(f"density must be in 0.1 … 2.0 g/cm³ (liquid water ≈ 1), got {density}")
    grams = n_molecules * WATER_MASS_AMU * _amu * 1e3
    return float((grams / density * 1e24) ** (1.0 / 3.0))


def density_of(atoms: Atoms) -> float:
    """Mass density (g/cm³) of a periodic cell."""
    if atoms.cell.rank < 3:
        raise InputError("a density needs a cell with three lattice vectors")
    return float(atoms.get_masses().sum() * _amu * 1e3 / (atoms.get_volume() * 1e-24))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform over SO(3) (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def water_box(
    n_molecules: int,
    density: float = DENSITY_298K,
    seed: int = 0,
    min_oo: float = 2.4,
    min_h: float = 1.3,
    max_attempts: int = 2000,
    max_restarts: int = 20,
) -> Atoms:
    """A cubic periodic box of ``n_molecules`` rigid waters (O, H, H per molecule).

    Random addition can jam by chance: a molecule that finds no place in ``max_attempts``
    tries starts the box again (``max_restarts`` times, each from its own derived seed);
    then :class:`~nnp_lab.errors.InputError` (density too high for the distance limits).
    """
    length = box_length(n_molecules, density)
    if min_oo >= length:
        raise InputError(f"box of {length:.2f} Å is smaller than min_oo = {min_oo} Å")
    for restart in range(max_restarts + 1):
        placed = _pack(
            n_molecules, length, np.random.default_rng([seed, restart]), min_oo, min_h, max_attempts
        )
        if placed is not None:
            break
    else:
        raise InputError(
            f"could not pack {n_molecules} waters at {density} g/cm³ ({max_restarts + 1} "
            f"tries of {max_attempts} attempts per molecule): lower the density or min_oo/min_h"
        )
    atoms = Atoms("OH2" * n_molecules, positions=placed.reshape(-1, 3), cell=[length] * 3, pbc=True)
    atoms.wrap()
    atoms.info["density_g_cm3"] = float(density)
    return atoms


def _pack(
    n_molecules: int,
    length: float,
    rng: np.random.Generator,
    min_oo: float,
    min_h: float,
    max_attempts: int,
) -> np.ndarray | None:
    """Positions (molecule, atom, xyz) by random sequential addition, or None if jammed."""
    w = molecule("H2O")
    ref = w.positions - w.positions[0]  # O at the origin
    placed = np.zeros((0, 3, 3))
    for _ in range(n_molecules):
        for _ in range(max_attempts):
            xyz = rng.uniform(0.0, length, 3) + ref @ _random_rotation(rng).T
            if len(placed):
                d = xyz[None, :, None, :] - placed[:, None, :, :]  # (placed, new atom, old atom)
                d -= length * np.round(d / length)
                r = np.linalg.norm(d, axis=-1)
                if r[:, 0, 0].min() < min_oo:
                    continue
                r[:, 0, 0] = np.inf
                if r.min() < min_h:
                    continue
            placed = np.concatenate([placed, xyz[None]])
            break
        else:
            return None
    return placed
