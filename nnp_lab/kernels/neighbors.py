"""Neighbor lists for flat batches of structures, computed by vesin (O(N) cell lists).

Pairs are returned as a *full* list (both i→j and j→i) with integer periodic shifts, so
the distance vector of a pair is ``r_j - r_i + shift @ cell``. Only indices and shifts
are produced here: distance vectors are recomputed by the caller with autograd enabled,
which gives forces and stress (strain derivatives) for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import vesin


@dataclass
class NeighborPairs:
    """Full neighbor list of a flat batch, grouped by centre (``i`` ascending).

    Attributes:
        i: (P,) index of the central atom (global index in the batch).
        j: (P,) index of the neighbor atom.
        shifts: (P, 3) integer periodic image of ``j`` (same dtype as positions).
        cutoff: the cutoff (Å) the list was built with.
    """

    i: torch.Tensor
    j: torch.Tensor
    shifts: torch.Tensor
    cutoff: float

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> NeighborPairs:
        """Move to ``device`` (and cast shifts to ``dtype``)."""
        return NeighborPairs(
            self.i.to(device),
            self.j.to(device),
            self.shifts.to(device=device, dtype=dtype or self.shifts.dtype),
            self.cutoff,
        )

    def __len__(self) -> int:
        return int(self.i.shape[0])


def structure_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbor list of one structure with vesin: ``(i, j, shifts, distances)``."""
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    pbc = np.asarray(pbc, dtype=bool)
    box = np.asarray(cell, dtype=np.float64) if pbc.any() else np.zeros((3, 3))
    i, j, s, d = nl.compute(
        np.ascontiguousarray(positions, dtype=np.float64), box, pbc, quantities="ijSd"
    )
    return i.astype(np.int64), j.astype(np.int64), s.astype(np.int64), d


def _centre_grouped_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full list of one structure grouped by centre (``i`` ascending): ``(i, j, shifts)``.

    With the compiled helper: vesin's half list (each pair once, ~3× faster than its full
    list for large systems) expanded by an O(P) counting sort. Otherwise vesin's full list,
    sorted if it is not already.
    """
    pbc = np.asarray(pbc, dtype=bool)
    box = np.asarray(cell, dtype=np.float64) if pbc.any() else np.zeros((3, 3))
    points = np.ascontiguousarray(positions, dtype=np.float64)
    expand = _full_from_half()
    if expand is not None:
        nl = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
        i, j, s = nl.compute(points, box, pbc, quantities="ijS")
        fi, fj, fs, _ = expand(
            torch.from_numpy(np.ascontiguousarray(i).view(np.int64)),
            torch.from_numpy(np.ascontiguousarray(j).view(np.int64)),
            torch.from_numpy(np.ascontiguousarray(s, dtype=np.int32)),
            len(points),
        )
        return fi, fj, fs
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = nl.compute(points, box, pbc, quantities="ijS")
    ti = torch.from_numpy(np.ascontiguousarray(i).view(np.int64))
    tj = torch.from_numpy(np.ascontiguousarray(j).view(np.int64))
    ts = torch.from_numpy(np.ascontiguousarray(s, dtype=np.int32))
    if ti.numel() > 1 and not bool((ti[1:] >= ti[:-1]).all()):
        order = torch.argsort(ti, stable=True)
        ti, tj, ts = ti[order], tj[order], ts[order]
    return ti, tj, ts


def _full_from_half():
    """The compiled half→full expansion, or None where the C++ extension is unavailable."""
    from nnp_lab.kernels.backend import _loader

    if _loader("cpu") is None:
        return None
    from nnp_lab.kernels.aev_cpu import full_from_half

    return full_from_half


def neighbor_pairs(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    ptr: torch.Tensor,
    cutoff: float,
) -> NeighborPairs:
    """Neighbor list of every structure in a flat batch, concatenated, grouped by centre
    (``i`` ascending over the whole batch).

    Args:
        positions: (N, 3) positions of all atoms.
        cell: (B, 3, 3) cells (rows are lattice vectors; ignored where not periodic).
        pbc: (B, 3) periodic flags.
        ptr: (B + 1,) start offset of each structure in ``positions``.
        cutoff: pair cutoff in Å.
    """
    device = positions.device
    pos = positions.detach().to("cpu", torch.float64).numpy()
    cells = cell.detach().to("cpu", torch.float64).numpy()
    flags = pbc.detach().to("cpu").numpy().astype(bool)
    offsets = ptr.detach().to("cpu").numpy()
    ii, jj, ss = [], [], []
    for b in range(len(offsets) - 1):
        lo, hi = int(offsets[b]), int(offsets[b + 1])
        if hi - lo == 0:
            continue
        i, j, s = _centre_grouped_pairs(pos[lo:hi], cells[b], flags[b], cutoff)
        ii.append(i + lo if lo else i)
        jj.append(j + lo if lo else j)
        ss.append(s)
    if len(ii) == 1:
        i_all, j_all, s_all = ii[0], jj[0], ss[0]
    elif ii:
        i_all, j_all, s_all = torch.cat(ii), torch.cat(jj), torch.cat(ss)
    else:
        i_all = torch.zeros(0, dtype=torch.long)
        j_all = torch.zeros(0, dtype=torch.long)
        s_all = torch.zeros((0, 3), dtype=torch.long)
    return NeighborPairs(
        i_all.to(device), j_all.to(device), s_all.to(device=device, dtype=positions.dtype), cutoff
    )
