"""Reference torch implementation of ANI-style atomic environment vectors (AEVs).

Functional form (Smith, Isayev, Roitberg, Chem. Sci. 8, 3192 (2017), with the NeuroChem
conventions that TorchANI keeps: a 0.25 prefactor on radial terms and ``acos(0.95 cos θ)``):

* cutoff       f_c(r) = ½ cos(π r / R_c) + ½ for r < R_c, else 0
* radial       G^R_{s,k}(i) = Σ_{j∈s} ¼ exp(-η_R (r_ij - R_k)²) f_c(r_ij)
* angular      G^A_{(s,t),k,m}(i) = Σ_{j<k'} 2^{1-ζ} (1 + cos(θ_ijk' - θ_m))^ζ
                 · exp(-η_A ((r_ij + r_ik')/2 - R_k)²) f_c(r_ij) f_c(r_ik')

Features are laid out as ``[radial (species × shifts), angular (species pairs × shifts ×
sections)]``; species pairs in upper-triangle order (0,0), (0,1), …, (1,1), … .
All ops here are differentiable twice (forces, and force training).
"""

from __future__ import annotations

import math

import torch

from nnp_lab.kernels.layout import PairLayout
from nnp_lab.kernels.params import AEVParams


def cosine_cutoff(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Cosine cutoff ½cos(πr/R_c)+½, exactly zero at and beyond ``cutoff``."""
    fc = 0.5 * torch.cos(distances * (math.pi / cutoff)) + 0.5
    return torch.where(distances < cutoff, fc, torch.zeros_like(fc))


def radial_terms(
    distances: torch.Tensor, eta: float, shifts: torch.Tensor, cutoff: float
) -> torch.Tensor:
    """Radial terms of every pair: (P, n_shifts)."""
    d = distances.unsqueeze(-1)
    return 0.25 * torch.exp(-eta * (d - shifts) ** 2) * cosine_cutoff(d, cutoff)


def angular_terms(
    d1: torch.Tensor,
    d2: torch.Tensor,
    cos_angle: torch.Tensor,
    eta: float,
    zeta: float,
    shifts: torch.Tensor,
    sections: torch.Tensor,
    cutoff: float,
) -> torch.Tensor:
    """Angular terms of every triple: (T, n_shifts * n_sections), shifts major."""
    angle = torch.acos(0.95 * cos_angle).unsqueeze(-1)
    ang = 2.0 * ((1.0 + torch.cos(angle - sections)) * 0.5) ** zeta  # (T, Z)
    mean_d = (0.5 * (d1 + d2)).unsqueeze(-1)
    fc = (cosine_cutoff(d1, cutoff) * cosine_cutoff(d2, cutoff)).unsqueeze(-1)
    rad = torch.exp(-eta * (mean_d - shifts) ** 2) * fc  # (T, K), cutoff folded in
    return (rad.unsqueeze(-1) * ang.unsqueeze(-2)).flatten(-2)


def species_pair_index(num_species: int, device: torch.device | None = None) -> torch.Tensor:
    """(S, S) symmetric table mapping a species pair to its upper-triangle index."""
    a, b = torch.triu_indices(num_species, num_species, device=device)
    table = torch.zeros(num_species, num_species, dtype=torch.long, device=device)
    idx = torch.arange(a.shape[0], device=device)
    table[a, b] = idx
    table[b, a] = idx
    return table


def build_triples(center: torch.Tensor, num_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All unordered pairs of neighbors sharing a center.

    Args:
        center: (P,) central atom of each pair, **sorted ascending**.
        num_atoms: number of atoms N.

    Returns:
        ``(p, q)``: indices into the pair list with ``center[p] == center[q]`` and ``p < q``;
        each unordered pair of neighbors of an atom appears once. Memory is O(triples).
    """
    device = center.device
    counts = torch.bincount(center, minlength=num_atoms)
    n_tri = counts * (counts - 1) // 2
    total = int(n_tri.sum())
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    start = torch.cumsum(counts, 0) - counts  # first pair of each atom
    tri_start = torch.cumsum(n_tri, 0) - n_tri
    owner = torch.repeat_interleave(torch.arange(num_atoms, device=device), n_tri)
    local = torch.arange(total, device=device) - tri_start[owner]
    # invert local = b (b - 1) / 2 + a with 0 <= a < b
    b = torch.floor((1.0 + torch.sqrt(1.0 + 8.0 * local.to(torch.float64))) * 0.5).long()
    b = torch.where(b * (b - 1) // 2 > local, b - 1, b)
    b = torch.where((b + 1) * b // 2 <= local, b + 1, b)
    a = local - b * (b - 1) // 2
    base = start[owner]
    return base + a, base + b


def _tensor(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def aev_torch(vectors: torch.Tensor, layout: PairLayout, params: AEVParams) -> torch.Tensor:
    """Reference AEVs (N, F) from pair vectors sorted as in ``layout`` (``vectors[layout.order]``).

    Plain differentiable torch ops: any order of derivatives works (forces, force training).
    Materialises per-triple terms (T × angular features); the fused backends do not.
    """
    n_atoms = layout.num_atoms
    ns = params.num_species
    dist = torch.linalg.vector_norm(vectors, dim=-1)
    radial_shifts = _tensor(params.radial_shifts, vectors)
    n_r = radial_shifts.shape[0]
    terms = radial_terms(dist, params.radial_eta, radial_shifts, params.radial_cutoff)
    radial = vectors.new_zeros((n_atoms * ns, n_r))
    radial = radial.index_add(0, layout.center * ns + layout.neighbor_species, terms)
    radial = radial.reshape(n_atoms, ns * n_r)

    ang = layout.angular
    ac = layout.center[ang]
    p, q = build_triples(ac, n_atoms)
    n_pairs = params.num_pairs
    n_a = params.angular_sublength
    angular = vectors.new_zeros((n_atoms * n_pairs, n_a))
    if p.numel():
        av, ad, asp = vectors[ang], dist[ang], layout.neighbor_species[ang]
        d1, d2 = ad[p], ad[q]
        cos = (av[p] * av[q]).sum(-1) / torch.clamp(d1 * d2, min=1e-10)
        tri = angular_terms(
            d1,
            d2,
            cos,
            params.angular_eta,
            params.zeta,
            _tensor(params.angular_shifts, vectors),
            _tensor(params.sections, vectors),
            params.angular_cutoff,
        )
        table = species_pair_index(ns, device=vectors.device)
        slot = ac[p] * n_pairs + table[asp[p], asp[q]]
        angular = angular.index_add(0, slot, tri)
    return torch.cat([radial, angular.reshape(n_atoms, n_pairs * n_a)], dim=-1)
