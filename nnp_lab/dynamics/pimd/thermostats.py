"""PILE thermostats for ring polymers (Ceriotti, Parrinello, Markland & Manolopoulos,
J. Chem. Phys. 133, 124104 (2010)).

Both act on normal-mode momenta, whose canonical variance at β_P = β / P is m / β_P:

* **PILE-L**: a Langevin (Ornstein–Uhlenbeck) step on every mode, friction
  γ_k = 2 λ ω_k for the internal modes (λ = 1: critical damping of the free modes) and
  γ_0 = 1 / τ_0 for the centroid.
* **PILE-G**: the same internal modes, the centroid by Bussi's stochastic velocity
  rescaling (Bussi, Donadio & Parrinello, J. Chem. Phys. 126, 014101 (2007)) with time
  constant τ_0 — gentler on the centroid dynamics.

Each call returns the kinetic energy it removed from the system, so an integrator can keep
the thermostatted Hamiltonian's conserved quantity.
"""

from __future__ import annotations

import math

import torch
from ase import units

from nnp_lab.errors import InputError

KINDS = ("pile_l", "pile_g", "none")


class PILE:
    """Half-step O operator of the PILE-L / PILE-G thermostats (or none).

    Args:
        kind: ``pile_l``, ``pile_g`` or ``none``.
        omega: (P,) free ring-polymer mode frequencies (inverse ASE time).
        masses: (N,) amu.
        temperature_K: physical temperature T; the modes are held at P T.
        dt: the time this operator spans (half an MD step in OBABO), ASE time units.
        tau_centroid: τ_0 of the centroid, ASE time units.
        pile_lambda: λ of the internal modes' friction 2 λ ω_k.
        thermostat_centroid: False leaves the centroid alone (thermostatted RPMD, where the
            centroid must keep its real-time dynamics).
    """

    def __init__(
        self,
        kind: str,
        omega: torch.Tensor,
        masses: torch.Tensor,
        temperature_K: float,
        dt: float,
        tau_centroid: float,
        pile_lambda: float = 1.0,
        thermostat_centroid: bool = True,
    ):
        if kind not in KINDS:
            raise InputError(f"thermostat must be one of {KINDS}, got {kind!r}")
        if kind != "none" and tau_centroid <= 0:
            raise InputError(f"tau_centroid must be positive, got {tau_centroid}")
        if pile_lambda <= 0:
            raise InputError(f"pile_lambda must be positive, got {pile_lambda}")
        self.kind = kind
        self.n_beads = int(omega.shape[0])
        self.masses = masses.to(torch.float64)
        self.beta_p = 1.0 / (units.kB * temperature_K * self.n_beads)
        gamma = 2.0 * pile_lambda * omega.to(torch.float64)
        gamma[0] = 1.0 / tau_centroid if (thermostat_centroid and kind == "pile_l") else 0.0
        self.c1 = torch.exp(-gamma * dt).view(-1, 1, 1)
        self.c2 = torch.sqrt(1.0 - self.c1**2)
        self.c2_sigma = self.c2 * torch.sqrt(self.masses / self.beta_p).view(1, -1, 1)
        self.global_centroid = kind == "pile_g" and thermostat_centroid
        self.c_global = math.exp(-dt / tau_centroid) if self.global_centroid else 1.0

    def __call__(self, p_modes: torch.Tensor, generator: torch.Generator) -> float:
        """Thermostat the normal-mode momenta (P, N, 3, CPU float64, as the ring polymer
        keeps them) in place; return ΔK removed (eV)."""
        if self.kind == "none":
            return 0.0
        m = self.masses.view(1, -1, 1)
        k_before = float((p_modes**2 / (2 * m)).sum())
        noise = torch.randn(p_modes.shape, generator=generator, dtype=torch.float64)
        p_modes.mul_(self.c1).add_(self.c2_sigma * noise)
        if self.global_centroid:
            self._bussi_centroid(p_modes, generator)
        return k_before - float((p_modes**2 / (2 * m)).sum())

    def _bussi_centroid(self, p_modes: torch.Tensor, generator: torch.Generator) -> None:
        m = self.masses.view(-1, 1)
        p0 = p_modes[0]
        kinetic = float((p0**2 / (2 * m)).sum())
        n_f = p0.numel()
        if kinetic <= 0:
            return
        target = 0.5 * n_f / self.beta_p
        c = self.c_global
        if c >= 1.0:
            return
        r = torch.randn(n_f, generator=generator, dtype=torch.float64)
        r1, rest = float(r[0]), float((r[1:] ** 2).sum())
        ratio = target / (n_f * kinetic)
        alpha2 = c + (1 - c) * (r1 * r1 + rest) * ratio + 2 * r1 * math.sqrt(c * (1 - c) * ratio)
        sign = 1.0 if r1 + math.sqrt(c / ((1 - c) * ratio)) >= 0 else -1.0
        p_modes[0].mul_(sign * math.sqrt(max(alpha2, 0.0)))
