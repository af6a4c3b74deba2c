"""Reaction coordinates of ring-polymer centroids and the biases that act on them.

A proton-transfer coordinate ξ = |r_H − r_D| − |r_H − r_A| (donor D, acceptor A): ξ < 0
with the proton on D, ξ = 0 half way, ξ > 0 on A. Several independent copies of a
molecule in one :class:`~nnp_lab.dynamics.pimd.rpmd.RingPolymer` (far apart, so the
potential does not couple them) carry one coordinate each: umbrella windows, replicas
and isotopes then run as ONE batched simulation.

A bias U(ξ(q̄)) on the centroid q̄ enters the ring-polymer Hamiltonian (sampled at P·T)
as P·U; every bead then feels the full force −∂U/∂q̄, and the centroid distribution is
weighted by e^{−βU} as in the physical ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from nnp_lab.errors import InputError


class ProtonTransfer:
    """ξ = |r_H − r_D| − |r_H − r_A| for every (donor, hydrogen, acceptor) triplet."""

    def __init__(self, triplets: Sequence[Sequence[int]]):
        t = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)
        if len(t) == 0 or len({tuple(x) for x in t.tolist()}) != len(t):
            raise InputError("need at least one distinct (donor, hydrogen, acceptor) triplet")
        if any(len(set(x)) != 3 for x in t.tolist()):
            raise InputError("donor, hydrogen and acceptor must be three different atoms")
        self.triplets = torch.as_tensor(t)

    def __len__(self) -> int:
        return len(self.triplets)

    def check(self, n_atoms: int) -> None:
        """Raise :class:`InputError` if an index is outside the system."""
        if int(self.triplets.max()) >= n_atoms or int(self.triplets.min()) < 0:
            raise InputError(f"reaction-coordinate index outside 0…{n_atoms - 1}")

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """ξ of positions ``x`` (…, N, 3) → (…, n_coordinates), Å."""
        d, h, a = self.triplets.T
        xh = x[..., h, :]
        return torch.linalg.norm(xh - x[..., d, :], dim=-1) - torch.linalg.norm(
            xh - x[..., a, :], dim=-1
        )

    def gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ξ (n,), ∂ξ_k/∂x (n, N, 3)) at one configuration ``x`` (N, 3); coordinate k
        depends only on its own three atoms."""
        d, h, a = self.triplets.T
        x = x.to(torch.float64)
        u_d = x[h] - x[d]
        u_a = x[h] - x[a]
        r_d = torch.linalg.norm(u_d, dim=-1, keepdim=True)
        r_a = torch.linalg.norm(u_a, dim=-1, keepdim=True)
        u_d, u_a = u_d / r_d, u_a / r_a
        n = len(self.triplets)
        grad = torch.zeros((n, *x.shape), dtype=torch.float64)
        k = torch.arange(n)
        grad[k, h] = u_d - u_a
        grad[k, d] = -u_d
        grad[k, a] = u_a
        return (r_d - r_a).squeeze(-1), grad


def flux_factor(coordinate: ProtonTransfer, x: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """|∇ξ|_m = √(Σ_i |∂ξ/∂r_i|² / m_i) of each coordinate at centroid ``x`` (1/√amu):
    the mass-weighted speed factor in the transition-state-theory flux."""
    _, g = coordinate.gradient(x)
    return torch.sqrt(((g**2).sum(-1) / masses.to(torch.float64)).sum(-1))


class CentroidBias:
    """Harmonic umbrella ½κ(ξ − ξ₀)² on each coordinate of the centroid; with
    ``side="above"`` only where ξ > ξ₀ (a one-sided wall, e.g. keeping a reactant from
    crossing), ``"below"`` only where ξ < ξ₀ (one side for all, or one per coordinate).

    Call with centroid positions (N, 3) → (total bias energy, force (N, 3)) in eV, eV/Å.
    """

    def __init__(
        self,
        coordinate: ProtonTransfer,
        centers: Sequence[float] | float,
        kappa: Sequence[float] | float,
        side: str | Sequence[str] = "both",
    ):
        n = len(coordinate)
        self.coordinate = coordinate
        self.centers = torch.as_tensor(np.broadcast_to(centers, (n,)).copy(), dtype=torch.float64)
        self.kappa = torch.as_tensor(np.broadcast_to(kappa, (n,)).copy(), dtype=torch.float64)
        sides = [side] * n if isinstance(side, str) else list(side)
        if len(sides) != n or any(x not in ("both", "above", "below") for x in sides):
            raise InputError(f"side must be 'both', 'above' or 'below' (one or {n}), got {side!r}")
        if not (self.kappa > 0).all() or not math.isfinite(float(self.centers.sum())):
            raise InputError("umbrella needs finite centers and force constants κ > 0 (eV/Å²)")
        self.above = torch.tensor([x == "above" for x in sides])
        self.below = torch.tensor([x == "below" for x in sides])

    def __call__(self, centroid: torch.Tensor) -> tuple[float, torch.Tensor]:
        xi, g = self.coordinate.gradient(centroid)
        dev = xi - self.centers
        dev = torch.where(self.above, dev.clamp(min=0), dev)
        dev = torch.where(self.below, dev.clamp(max=0), dev)
        energy = float((0.5 * self.kappa * dev**2).sum())
        force = -((self.kappa * dev).view(-1, 1, 1) * g).sum(0)
        return energy, force
