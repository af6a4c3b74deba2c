"""Flat batches: the atoms of many structures concatenated, with a ``batch`` index (no padding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from ase import Atoms

from nnp_lab.data.structures import validate_atoms
from nnp_lab.kernels.neighbors import NeighborPairs, neighbor_pairs


@dataclass
class Batch:
    """Structures concatenated along the atom axis.

    Attributes:
        positions: (N, 3) Å.  numbers: (N,) atomic numbers.
        cell: (B, 3, 3) Å, rows are lattice vectors.  pbc: (B, 3) bool.
        batch: (N,) structure index of each atom.  ptr: (B + 1,) offsets.
        energy: (B,) eV, forces: (N, 3) eV/Å, stress: (B, 3, 3) eV/Å³ — reference labels
        where known (NaN where missing), or None.
        pairs: cached neighbor list, or None.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    pairs: NeighborPairs | None = field(default=None, repr=False)

    @property
    def n_structures(self) -> int:
        return int(self.ptr.shape[0] - 1)

    @property
    def n_atoms(self) -> torch.Tensor:
        """(B,) number of atoms of each structure."""
        return self.ptr[1:] - self.ptr[:-1]

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @classmethod
    def from_arrays(
        cls,
        numbers: Sequence[np.ndarray],
        positions: Sequence[np.ndarray],
        cells: Sequence[np.ndarray],
        pbcs: Sequence[np.ndarray],
        energy: Sequence[float] | None = None,
        forces: Sequence[np.ndarray] | None = None,
        stress: Sequence[np.ndarray] | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> Batch:
        """Build a batch from per-structure numpy arrays (no validation)."""
        counts = np.array([len(z) for z in numbers], dtype=np.int64)
        ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
        batch = torch.repeat_interleave(torch.arange(len(counts)), torch.from_numpy(counts))

        def cat(arrs, shape_tail):
            if len(arrs) == 0:
                return torch.zeros((0, *shape_tail), dtype=dtype)
            return torch.from_numpy(np.concatenate([np.asarray(a, np.float64) for a in arrs]))

        out = cls(
            positions=cat(positions, (3,)).to(device=device, dtype=dtype),
            numbers=torch.from_numpy(np.concatenate(numbers).astype(np.int64)).to(device),
            cell=torch.from_numpy(np.stack([np.asarray(c, np.float64) for c in cells]))
            .reshape(-1, 3, 3)
            .to(device=device, dtype=dtype),
            pbc=torch.from_numpy(np.stack([np.asarray(p, bool) for p in pbcs]))
            .reshape(-1, 3)
            .to(device),
            batch=batch.to(device),
            ptr=ptr.to(device),
        )
        if energy is not None:
            out.energy = torch.as_tensor(np.asarray(energy, np.float64), dtype=dtype, device=device)
        if forces is not None:
            out.forces = cat(forces, (3,)).to(device=device, dtype=dtype)
        if stress is not None:
            out.stress = torch.as_tensor(
                np.asarray(stress, np.float64).reshape(-1, 3, 3), dtype=dtype, device=device
            )
        return out

    @classmethod
    def from_atoms(
        cls,
        atoms: Atoms | Sequence[Atoms],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        validate: bool = True,
    ) -> Batch:
        """Batch one or many :class:`ase.Atoms` (validated unless ``validate=False``)."""
        if isinstance(atoms, Atoms):
            atoms = [atoms]
        atoms = list(atoms)
        if validate:
            for k, a in enumerate(atoms):
                validate_atoms(a, index=k if len(atoms) > 1 else None)
        return cls.from_arrays(
            [a.numbers for a in atoms],
            [a.positions for a in atoms],
            [a.cell.array for a in atoms],
            [a.pbc for a in atoms],
            dtype=dtype,
            device=device,
        )

    def neighbors(self, cutoff: float) -> NeighborPairs:
        """Full neighbor list for ``cutoff`` (reuses the cached list when it is long enough)."""
        if self.pairs is not None and self.pairs.cutoff >= cutoff:
            return self.pairs
        self.pairs = neighbor_pairs(self.positions, self.cell, self.pbc, self.ptr, cutoff)
        return self.pairs

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Batch:
        """Copy to another device and/or floating dtype."""
        device = device or self.device
        dtype = dtype or self.dtype

        def f(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return replace(
            self,
            positions=f(self.positions),
            numbers=self.numbers.to(device),
            cell=f(self.cell),
            pbc=self.pbc.to(device),
            batch=self.batch.to(device),
            ptr=self.ptr.to(device),
            energy=f(self.energy),
            forces=f(self.forces),
            stress=f(self.stress),
            pairs=None if self.pairs is None else self.pairs.to(device, dtype),
        )

    @staticmethod
    def cat(parts: Sequence[Batch]) -> Batch:
        """Concatenate batches (their cached neighbor lists too, if all have one)."""
        if len(parts) == 1:
            return parts[0]
        offsets = [0]
        for p in parts:
            offsets.append(offsets[-1] + int(p.positions.shape[0]))
        sizes = torch.cat([p.n_atoms for p in parts])
        ptr = torch.cat(
            [torch.zeros(1, dtype=torch.long, device=sizes.device), torch.cumsum(sizes, 0)]
        )
        batch = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)

        def opt(name):
            vals = [getattr(p, name) for p in parts]
            return None if any(v is None for v in vals) else torch.cat(vals)

        pairs = None
        if all(p.pairs is not None for p in parts):
            pairs = NeighborPairs(
                torch.cat([p.pairs.i + o for p, o in zip(parts, offsets)]),
                torch.cat([p.pairs.j + o for p, o in zip(parts, offsets)]),
                torch.cat([p.pairs.shifts for p in parts]),
                min(p.pairs.cutoff for p in parts),
            )
        return Batch(
            positions=torch.cat([p.positions for p in parts]),
            numbers=torch.cat([p.numbers for p in parts]),
            cell=torch.cat([p.cell for p in parts]),
            pbc=torch.cat([p.pbc for p in parts]),
            batch=batch,
            ptr=ptr,
            energy=opt("energy"),
            forces=opt("forces"),
            stress=opt("stress"),
            pairs=pairs,
        )
