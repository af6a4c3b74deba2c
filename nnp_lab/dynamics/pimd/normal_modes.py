"""Ring-polymer normal modes and the exact (or Cayley) free ring-polymer step.

A ring polymer of P beads with physical masses m has the spring energy
Σ_j ½ m ω_P² |q_j − q_{j+1}|² (ω_P = P k_B T / ħ, bead P+1 ≡ bead 1). The orthogonal
transform of Ceriotti et al., J. Chem. Phys. 133, 124104 (2010), Eq. 18, diagonalises it
into modes of frequency ω_k = 2 ω_P sin(kπ/P); mode 0 is √P × the centroid.
"""

from __future__ import annotations

import math

import torch
from ase import units

from nnp_lab.errors import InputError

HBAR = units._hbar * units.J * units.s  # eV × ASE time unit
"""ħ in ASE units (eV, Å, amu, time unit Å·√(amu/eV))."""

SCHEMES = ("standard", "cayley")


def normal_mode_matrix(n_beads: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthogonal (P, P) matrix C with q_bead = C @ q_mode (bead index first).

    Columns: k = 0 constant; 1 ≤ k < P/2 cosines; k = P/2 alternating signs (even P);
    P/2 < k < P sines — all normalised, so C is orthogonal and C.T transforms back.
    """
    if n_beads < 1:
        raise InputError(f"need at least one bead, got {n_beads}")
    p = n_beads
    j = torch.arange(1, p + 1, dtype=torch.float64)
    c = torch.empty((p, p), dtype=torch.float64)
    for k in range(p):
        if k == 0:
            c[:, k] = math.sqrt(1.0 / p)
        elif 2 * k < p:
            c[:, k] = math.sqrt(2.0 / p) * torch.cos(2 * math.pi * j * k / p)
        elif 2 * k == p:
            c[:, k] = math.sqrt(1.0 / p) * (-1.0) ** j
        else:
            c[:, k] = math.sqrt(2.0 / p) * torch.sin(2 * math.pi * j * k / p)
    return c.to(dtype)


def ring_polymer_frequency(n_beads: int, temperature_K: float) -> float:
    """ω_P = P k_B T / ħ in inverse ASE time units."""
    if temperature_K <= 0:
        raise InputError(f"temperature must be positive, got {temperature_K} K")
    return n_beads * units.kB * temperature_K / HBAR


def mode_frequencies(n_beads: int, temperature_K: float) -> torch.Tensor:
    """Free ring-polymer normal-mode frequencies ω_k = 2 ω_P sin(kπ/P), k = 0…P−1."""
    k = torch.arange(n_beads, dtype=torch.float64)
    return 2 * ring_polymer_frequency(n_beads, temperature_K) * torch.sin(k * math.pi / n_beads)


def to_modes(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Bead coordinates (P, …) → normal-mode coordinates (P, …)."""
    return torch.tensordot(c.T, x, dims=1)


def to_beads(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Normal-mode coordinates (P, …) → bead coordinates (P, …)."""
    return torch.tensordot(c, x, dims=1)


def free_step_coefficients(
    omega: torch.Tensor, masses: torch.Tensor, dt: float, scheme: str = "standard"
) -> tuple[torch.Tensor, ...]:
    """Coefficients (a, b, c, d), each (P, N, 1), of the free step
    p' = a p + b q,  q' = c p + d q  for every mode k and atom.

    ``standard``: the exact harmonic rotation; ``cayley``: the Cayley transform of the
    same linear flow (Korol, Bou-Rabee & Miller, J. Chem. Phys. 151, 124103 (2019)),
    stable for any step and mode. Mode 0 (ω = 0) is free flight in both.
    """
    if scheme not in SCHEMES:
        raise InputError(f"free ring-polymer step must be one of {SCHEMES}, got {scheme!r}")
    w = omega.view(-1, 1, 1).to(torch.float64)
    m = masses.view(1, -1, 1).to(torch.float64)
    if scheme == "standard":
        cos, sin = torch.cos(w * dt), torch.sin(w * dt)
        safe = torch.where(w > 0, w, torch.ones_like(w))
        a = cos.expand(-1, m.shape[1], 1)
        b = torch.where(w > 0, -m * safe * sin, torch.zeros_like(m * w))
        c = torch.where(w > 0, sin / (m * safe), dt / m)
        d = cos.expand(-1, m.shape[1], 1)
    else:
        h = (w * dt / 2) ** 2
        den = 1 + h
        a = ((1 - h) / den).expand(-1, m.shape[1], 1)
        b = -m * w**2 * dt / den
        c = dt / (m * den)
        d = a
    return a, b, c, d
