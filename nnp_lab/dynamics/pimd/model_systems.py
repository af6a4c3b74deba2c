"""Model potentials with exact quantum answers, as torch energy functions of bead positions.

Each takes bead positions (P, N, 3) [Å] and returns the energy of each bead (P,) [eV],
summed over the N atoms (independent particles), so many copies of a 1D/3D problem run in
one simulation. Use them with :class:`~nnp_lab.dynamics.pimd.beads.FunctionBeads` (or pass
them directly as the ``potential`` of a ring-polymer run).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nnp_lab.errors import InputError


class Harmonic:
    """Isotropic (``dims=3``) or 1D (``dims=1``, along x) harmonic well ½ k |r − r0|²."""

    def __init__(self, k: float, dims: int = 3):
        if k <= 0 or dims not in (1, 3):
            raise InputError(f"need k > 0 and dims 1 or 3, got k={k}, dims={dims}")
        self.k, self.dims = k, dims

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.k * (q[..., : self.dims] ** 2).sum(dim=(-1, -2))


class Eckart:
    """Symmetric Eckart barrier V(x) = V0 / cosh²(x / a) along x (y, z free)."""

    def __init__(self, height: float, width: float):
        if height <= 0 or width <= 0:
            raise InputError(f"need height > 0 and width > 0, got {height}, {width}")
        self.height, self.width = height, width

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return (self.height / torch.cosh(q[..., 0] / self.width) ** 2).sum(-1)


class DoubleWell:
    """Symmetric quartic double well V(x) = V0 ((x / x0)² − 1)² along x (y, z free)."""

    def __init__(self, height: float, half_distance: float):
        if height <= 0 or half_distance <= 0:
            raise InputError(
                f"need height > 0 and half_distance > 0, got {height}, {half_distance}"
            )
        self.height, self.x0 = height, half_distance

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return (self.height * ((q[..., 0] / self.x0) ** 2 - 1) ** 2).sum(-1)


def harmonic_energy_exact(beta_hbar_omega: float | np.ndarray, n_beads: int) -> np.ndarray:
    """Mean energy per degree of freedom of a harmonic oscillator with P beads, in ħω.

    From Z_P = Π_k ω_P / √(ω² + ω_k²) (ω_k = 2 ω_P sin(kπ/P), ω_P = P / βħ):
    ⟨E⟩_P = (1/β) Σ_k ω² / (ω² + ω_k²). P = 1 gives k_B T; P → ∞ gives ½ħω coth(βħω/2).
    """
    x = np.asarray(beta_hbar_omega, dtype=float)
    if np.any(x <= 0) or n_beads < 1:
        raise InputError("need βħω > 0 and at least one bead")
    k = np.arange(n_beads)
    ratio = (2 * n_beads / x[..., None] * np.sin(k * math.pi / n_beads)) ** 2  # (ω_k/ω)²
    return (1.0 / (1.0 + ratio)).sum(-1) / x


def harmonic_energy_quantum(beta_hbar_omega: float | np.ndarray) -> np.ndarray:
    """Exact quantum mean energy per degree of freedom, ½ coth(βħω/2), in ħω."""
    x = np.asarray(beta_hbar_omega, dtype=float)
    return 0.5 / np.tanh(x / 2)


def harmonic_gyration_exact(
    beta_hbar_omega: float | np.ndarray, n_beads: int, dims: int = 3
) -> np.ndarray:
    """⟨R_g²⟩ of a harmonic ring polymer, in units of ħ / (m ω) (its length scale squared).

    The bead deviations from the centroid are the internal normal modes, each Gaussian
    with variance 1 / (β_P m (ω² + ω_k²)); so ⟨R_g²⟩ = dims · Σ_{k≥1} 1 / (β m (ω² + ω_k²)).
    Tends to dims · (½ coth(βħω/2) − 1/(βħω)) ħ/(mω) as P → ∞.
    """
    x = np.asarray(beta_hbar_omega, dtype=float)
    k = np.arange(1, n_beads)
    ratio = (2 * n_beads / x[..., None] * np.sin(k * math.pi / n_beads)) ** 2
    return dims * (1.0 / (1.0 + ratio)).sum(-1) / x
