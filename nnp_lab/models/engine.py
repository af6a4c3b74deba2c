"""Memory-bounded inference: energies, forces and stress evaluated over chunks of atoms.

The full neighbor list is sorted by centre once; each chunk of centre atoms then takes a
contiguous slice of pairs, computes its descriptors and atomic energies, and back-propagates
to its pair vectors. Pair gradients ``g = ∂E/∂(r_j − r_i)`` give the forces
(``F_i += g``, ``F_j −= g``) and the virial (``W = Σ (r_j − r_i) ⊗ g``), so the peak memory
is set by the chunk, not by the system: a million atoms fit in a few GB.

A model provides :data:`TermsFunction`: the chunk's atomic energies for K members (K = 1 for
one potential, K > 1 for a committee), ∂E_k/∂G for each member, and the descriptor's
pullback, which maps the K cotangents to K pair-gradient arrays in one call (the fused CPU
kernel evaluates the geometry of each pair and triple once for all K). The networks are
differentiated once, never K times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnp_lab.data.batch import Batch
from nnp_lab.kernels.backend import Pullback

# (vectors (P, 3), centre index local to the chunk (P,), neighbour atom (P,),
#  neighbour species (P,), species of the chunk's centres (C,), need_grad)
#  → (energies (K, C) float64, pullback (K, C, F) → (K, P, 3) or None, dE/dG (K, C, F) or None)
TermsFunction = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool],
    tuple[torch.Tensor, Pullback | None, torch.Tensor | None],
]


@dataclass
class Evaluation:
    """Per-member results: energy (K, B) float64, atomic (K, N), forces (K, N, 3) or None,
    virial (K, B, 3, 3) or None (``∂E/∂ε``, symmetrised)."""

    energy: torch.Tensor
    atomic: torch.Tensor
    forces: torch.Tensor | None
    virial: torch.Tensor | None


def sorted_pairs(batch: Batch, cutoff: float) -> tuple[torch.Tensor, ...]:
    """The batch's full neighbor list sorted by centre: ``i, j, shifts, row_ptr``."""
    pairs = batch.neighbors(cutoff)
    i, j, shifts = pairs.i, pairs.j, pairs.shifts
    if i.numel() > 1 and not bool((i[1:] >= i[:-1]).all()):  # lists come grouped by centre
        order = torch.argsort(i, stable=True)
        i, j, shifts = i[order], j[order], shifts[order]
    counts = torch.bincount(i, minlength=batch.positions.shape[0])
    row_ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return i, j, shifts, row_ptr


def evaluate_chunked(
    batch: Batch,
    cutoff: float,
    species: torch.Tensor,
    terms_fn: TermsFunction,
    n_members: int,
    dtype: torch.dtype,
    chunk_atoms: int,
    forces: bool = True,
    virial: bool = False,
) -> Evaluation:
    """Evaluate ``terms_fn`` over chunks of at most ``chunk_atoms`` centre atoms."""
    device = batch.positions.device
    n_atoms = int(batch.positions.shape[0])
    pos = batch.positions.detach().to(dtype)
    cell = batch.cell.detach().to(dtype)
    i_all, j_all, s_all, row_ptr = sorted_pairs(batch, cutoff)
    row_ptr_cpu = row_ptr.cpu()
    energy = torch.zeros((n_members, batch.n_structures), dtype=torch.float64, device=device)
    atomic = torch.zeros((n_members, n_atoms), dtype=torch.float64, device=device)
    # (N, K, 3) while accumulating: a pair's K gradients are one contiguous row
    force = torch.zeros((n_atoms, n_members, 3), dtype=dtype, device=device) if forces else None
    vir = (
        torch.zeros((n_members, batch.n_structures, 3, 3), dtype=dtype, device=device)
        if virial
        else None
    )
    need_grad = forces or virial
    owner_all = batch.batch
    for start in range(0, n_atoms, max(1, int(chunk_atoms))):
        end = min(start + int(chunk_atoms), n_atoms)
        p0, p1 = int(row_ptr_cpu[start]), int(row_ptr_cpu[end])
        i, j, s = i_all[p0:p1], j_all[p0:p1], s_all[p0:p1].to(dtype)
        with torch.no_grad():
            if batch.n_structures == 1:  # one cell: a (P, 3) @ (3, 3) product, no gather
                vec = pos[j] - pos[i] + s @ cell[0]
            else:
                vec = pos[j] - pos[i] + torch.einsum("pk,pkx->px", s, cell[owner_all[i]])
        e, pull, de_dg = terms_fn(vec, i - start, j, species[j], species[start:end], need_grad)
        owner = owner_all[start:end]
        atomic[:, start:end] = e.detach()
        energy.index_add_(1, owner, e.detach())
        if not need_grad or vec.shape[0] == 0 or pull is None:
            continue
        with torch.no_grad():
            g = pull(de_dg)  # (P, K, 3) = ∂E_k/∂(r_j − r_i)
            if force is not None:
                force.index_add_(0, i, g)
                force.index_add_(0, j, g, alpha=-1)
            if vir is not None:
                pair_owner = owner_all[i]
                for k in range(n_members):
                    w = vec.unsqueeze(-1) * g[:, k].unsqueeze(-2)  # (P, 3, 3)
                    vir[k].index_add_(0, pair_owner, w)
    if vir is not None:
        vir = 0.5 * (vir + vir.transpose(-1, -2))
    if force is not None:
        force = force.transpose(0, 1).contiguous()  # (K, N, 3)
    return Evaluation(energy=energy, atomic=atomic, forces=force, virial=vir)
