"""Checks on input structures: every problem a user can cause gets a message naming it."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from nnp_lab.errors import InputError
from nnp_lab.kernels.neighbors import structure_pairs

MIN_DISTANCE = 0.1  # Å; closer atoms are almost certainly a duplicated atom


def _where(index: int | None) -> str:
    return "" if index is None else f"structure {index}: "


def validate_arrays(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    index: int | None = None,
    min_distance: float = MIN_DISTANCE,
) -> None:
    """Raise :class:`InputError` if a structure cannot be evaluated meaningfully.

    Checks: at least one atom, valid atomic numbers, finite positions and cell, a
    non-degenerate cell along periodic directions, and no two atoms (or periodic images)
    closer than ``min_distance`` Å.
    """
    where = _where(index)
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(-1)
    if len(numbers) == 0:
        raise InputError(f"{where}the structure has no atoms")
    if positions.shape != (len(numbers), 3):
        raise InputError(
            f"{where}positions have shape {positions.shape}, expected ({len(numbers)}, 3)"
        )
    bad_z = np.flatnonzero((numbers < 1) | (numbers >= len(chemical_symbols)))
    if bad_z.size:
        raise InputError(f"{where}invalid atomic number {numbers[bad_z[0]]} at atom {bad_z[0]}")
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        raise InputError(
            f"{where}positions contain NaN or inf at atom(s) {bad[:10].tolist()}; "
            "fix or drop these structures"
        )
    if pbc.shape != (3,):
        raise InputError(f"{where}pbc must have 3 flags, got {pbc.tolist()}")
    if not np.isfinite(cell).all():
        raise InputError(f"{where}the cell contains NaN or inf")
    if pbc.any():
        zero = [int(ax) for ax in np.flatnonzero(pbc) if np.linalg.norm(cell[ax]) < 1e-6]
        if len(zero) == 3 or (zero and not np.any(cell)):
            raise InputError(
                f"{where}pbc={pbc.tolist()} but the cell has zero volume (no cell set); "
                "set a proper cell (atoms.cell) or use pbc=False"
            )
        if zero:
            raise InputError(
                f"{where}pbc is True along cell vector {zero[0]} but that vector is zero; "
                "set a proper cell (atoms.cell) or use pbc=False in that direction"
            )
        periodic_vectors = cell[pbc]
        if np.linalg.matrix_rank(periodic_vectors, tol=1e-6) < len(periodic_vectors):
            raise InputError(
                f"{where}the periodic cell vectors {periodic_vectors.tolist()} are linearly "
                "dependent (zero volume); give them independent, non-zero values"
            )
    if len(numbers) > 1 or pbc.any():
        # vesin's cell list uses cells of about the cutoff: a tiny cutoff would mean
        # millions of cells, so search at 1 Å and filter.
        i, j, _, d = structure_pairs(positions, cell, pbc, max(min_distance, 1.0))
        close = d < min_distance
        i, j, d = i[close], j[close], d[close]
        if len(i):
            k = int(np.argmin(d))
            raise InputError(
                f"{where}atoms {int(i[k])} and {int(j[k])} are {d[k]:.3g} Å apart "
                f"(< {min_distance} Å): a duplicated atom or wrong units?"
            )


def validate_atoms(atoms: Atoms, index: int | None = None) -> None:
    """Validate an :class:`ase.Atoms` (see :func:`validate_arrays`)."""
    if not isinstance(atoms, Atoms):
        raise InputError(f"{_where(index)}expected ase.Atoms, got {type(atoms).__name__}")
    validate_arrays(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, index)


def symbols_of(numbers: np.ndarray) -> list[str]:
    """Chemical symbols of the distinct atomic numbers, sorted by atomic number."""
    return [chemical_symbols[int(z)] for z in sorted(set(np.asarray(numbers).tolist()))]
