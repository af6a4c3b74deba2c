"""Reaction rates through a 1D barrier: exact quantum, classical TST and RPMD.

The model problem is a particle of mass m crossing a barrier V(x) along x (the
:mod:`~nnp_lab.dynamics.pimd.model_systems` potentials act on each atom's x
independently, so N atoms are N independent replicas in one simulation).

Rates are per unit reactant density (k·Q_r / Q_r with Q_r = √(m / 2πβħ²) per Å), so
they carry units of Å/fs and the classical rate e^{−βV₀} / (2πħβ Q_r) falls as m^(−1/2).

* **Exact**: k Q_r = (1/2πħ) ∫ P(E) e^{−βE} dE with the analytic transmission P(E) of
  the symmetric Eckart barrier V₀ sech²(x/a) (Landau & Lifshitz, QM §25, problem 4).
* **RPMD** (Craig & Manolopoulos, J. Chem. Phys. 122, 084106 (2005)):
  k = κ(t→∞) · e^{−β ΔW} / (2πħβ Q_r), ΔW the centroid free-energy rise from the
  reactant asymptote to the dividing surface x̄ = x‡ (constrained-centroid mean force,
  integrated), κ the Bennett–Chandler recrossing factor of ring-polymer trajectories
  started on the dividing surface. With P = 1 this is classical TST times classical κ.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr
from ase import Atoms, units

from nnp_lab.dynamics.pimd.model_systems import Eckart
from nnp_lab.dynamics.pimd.normal_modes import HBAR
from nnp_lab.dynamics.pimd.rpmd import PIMDConfig, RingPolymer
from nnp_lab.errors import InputError


def barrier_frequency(height: float, width: float, mass: float) -> float:
    """ω_b = √(2 V₀ / (m a²)) of the Eckart barrier top (inverse ASE time)."""
    return math.sqrt(2 * height / (mass * width**2))


def crossover_temperature(height: float, width: float, mass: float) -> float:
    """T_c = ħ ω_b / (2π k_B): below it tunnelling dominates (deep-tunnelling regime)."""
    return HBAR * barrier_frequency(height, width, mass) / (2 * math.pi * units.kB)


def eckart_transmission(
    energy: np.ndarray | float, height: float, width: float, mass: float
) -> np.ndarray:
    """Exact transmission probability P(E) through V₀ sech²(x/a) (E in eV, a in Å, m amu)."""
    e = np.asarray(energy, dtype=float)
    alpha = np.sqrt(2 * mass * np.clip(e, 0, None)) * width / HBAR
    d2 = 2 * mass * height * width**2 / HBAR**2 - 0.25
    two_pi_a = np.minimum(2 * math.pi * alpha, 700.0)
    if d2 > 0:
        c = math.cosh(min(2 * math.pi * math.sqrt(d2), 700.0))
    else:
        c = math.cos(2 * math.pi * math.sqrt(-d2))
    return (np.cosh(two_pi_a) - 1) / (np.cosh(two_pi_a) + c)


def reactant_density(temperature_K: float, mass: float) -> float:
    """Q_r = √(m / 2πβħ²): free-particle partition function per Å."""
    beta = 1 / (units.kB * temperature_K)
    return math.sqrt(mass / (2 * math.pi * beta * HBAR**2))


def classical_rate(temperature_K: float, height: float, mass: float) -> float:
    """Classical TST (exact classically for a 1D barrier): e^{−βV₀}/(2πħβ Q_r), Å/fs."""
    beta = 1 / (units.kB * temperature_K)
    k = (
        math.exp(-beta * height)
        / (2 * math.pi * HBAR * beta)
        / reactant_density(temperature_K, mass)
    )
    return k * units.fs


def eckart_exact_rate(temperature_K: float, height: float, width: float, mass: float) -> float:
    """Exact quantum rate (Å/fs): (1/2πħQ_r) ∫ P(E) e^{−βE} dE, by quadrature."""
    from scipy.integrate import quad

    beta = 1 / (units.kB * temperature_K)

    def f(e: float) -> float:  # shifted by V₀ so the integrand peaks near 1
        return float(eckart_transmission(e, height, width, mass)) * math.exp(-beta * (e - height))

    lo, hi = 0.0, height + 60 / beta
    flux, _ = quad(f, lo, hi, points=[height], limit=400, epsabs=0, epsrel=1e-10)
    k = (
        flux
        * math.exp(-beta * height)
        / (2 * math.pi * HBAR)
        / reactant_density(temperature_K, mass)
    )
    return k * units.fs


def _particles(n: int, mass: float, x: np.ndarray) -> Atoms:
    atoms = Atoms("H" * n, positions=np.column_stack([x, np.zeros(n), np.zeros(n)]))
    atoms.set_masses([mass] * n)
    return atoms


def _constrained_average(
    atoms: Atoms,
    potential: Any,
    config: PIMDConfig,
    estimator: Any,
    steps: int,
    equilibrate: int,
    sample_every: int,
) -> np.ndarray:
    """Time average of ``estimator(ring)`` (one value per atom) over a run with every
    atom's centroid x held where it starts (PILE-L on everything else)."""
    mask = np.zeros((len(atoms), 3), bool)
    mask[:, 0] = True
    ring = RingPolymer(atoms, potential, config, fixed_centroid=mask)
    ring.step(equilibrate)
    acc = torch.zeros(len(atoms), dtype=torch.float64)
    count = 0
    for _ in range(max(1, steps // sample_every)):
        ring.step(sample_every)
        acc += estimator(ring)
        count += 1
    return (acc / count).numpy()


def centroid_mean_force(
    potential: Any,
    mass: float,
    temperature_K: float,
    n_beads: int,
    xi: np.ndarray,
    replicas: int = 16,
    steps: int = 4000,
    equilibrate: int = 500,
    sample_every: int = 4,
    timestep_fs: float = 0.1,
    seed: int = 0,
) -> xr.Dataset:
    """Mean force on the centroid held at each x̄ = ``xi`` (one run: every grid point gets
    ``replicas`` independent particles). Returns ``mean_force`` and its standard error
    (from the spread over replicas) on the ``xi`` coordinate, eV/Å."""
    xi = np.asarray(xi, dtype=float)
    if xi.ndim != 1 or len(xi) == 0 or replicas < 2 or steps < 1:
        raise InputError("need a 1D grid xi, replicas ≥ 2 and steps ≥ 1")
    cfg = PIMDConfig(
        n_beads=n_beads,
        temperature_K=temperature_K,
        timestep_fs=timestep_fs,
        thermostat="pile_l",
        seed=seed,
    )
    atoms = _particles(len(xi) * replicas, mass, np.repeat(xi, replicas))
    per = _constrained_average(
        atoms,
        potential,
        cfg,
        lambda ring: ring.centroid_force()[:, 0],
        steps,
        equilibrate,
        sample_every,
    ).reshape(len(xi), replicas)
    return xr.Dataset(
        {
            "mean_force": ("xi", per.mean(1), {"units": "eV/Å"}),
            "mean_force_err": ("xi", per.std(1, ddof=1) / math.sqrt(replicas), {"units": "eV/Å"}),
        },
        coords={"xi": ("xi", xi, {"units": "Å"})},
        attrs={"n_beads": n_beads, "temperature_K": temperature_K, "mass_amu": mass},
    )


def free_energy_rise(force: xr.Dataset) -> tuple[float, float]:
    """ΔW = −∫ ⟨f⟩ dx̄ from the grid's first point (the reactant side) to its last (x‡),
    by Gauss–Legendre weights when the grid is :func:`gauss_grid`, else the trapezoid
    rule; returns (ΔW, its standard error) in eV."""
    xi = force["xi"].values
    w = force.attrs.get("weights")
    weights = np.asarray(w) if w is not None else _trapezoid_weights(xi)
    f, e = force["mean_force"].values, force["mean_force_err"].values
    return float(-(weights * f).sum()), float(np.sqrt(((weights * e) ** 2).sum()))


def _trapezoid_weights(x: np.ndarray) -> np.ndarray:
    w = np.zeros_like(x)
    dx = np.diff(x)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w


def gauss_grid(start: float, stop: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [start, stop]."""
    t, w = np.polynomial.legendre.leggauss(n)
    half = (stop - start) / 2
    return start + half * (t + 1), half * w


def recrossing_factor(
    potential: Any,
    mass: float,
    temperature_K: float,
    n_beads: int,
    x_ts: float = 0.0,
    replicas: int = 64,
    releases: int = 8,
    t_max_fs: float = 60.0,
    timestep_fs: float = 0.1,
    decorrelate: int = 200,
    seed: int = 0,
) -> xr.Dataset:
    """Bennett–Chandler κ(t) = ⟨v̄₀ θ(x̄(t) − x‡)⟩ / ⟨v̄₀ θ(v̄₀)⟩ from ring polymers
    started on the dividing surface (constrained-centroid sampling, thermal momenta) and
    run without thermostat (RPMD). ``replicas`` × ``releases`` trajectories."""
    if replicas < 1 or releases < 1:
        raise InputError("need replicas ≥ 1 and releases ≥ 1")
    mask = np.zeros((replicas, 3), bool)
    mask[:, 0] = True
    cfg = PIMDConfig(
        n_beads=n_beads, temperature_K=temperature_K, timestep_fs=timestep_fs, seed=seed
    )
    sampler = RingPolymer(
        _particles(replicas, mass, np.full(replicas, x_ts)), potential, cfg, fixed_centroid=mask
    )
    sampler.step(decorrelate * 2)
    n_t = round(t_max_fs / timestep_fs)
    every = max(1, n_t // 200)
    num = np.zeros(n_t // every + 1)
    den = 0.0
    for r in range(releases):
        sampler.step(decorrelate)
        free = RingPolymer(
            _particles(replicas, mass, np.full(replicas, x_ts)),
            potential,
            cfg.model_copy(update={"thermostat": "none", "seed": seed * 1000 + r + 1}),
            positions=sampler.q.clone(),
        )
        v0 = (free.p.mean(0)[:, 0] / free.masses).numpy()
        den += float((v0 * (v0 > 0)).sum())
        side = [(free.centroid[:, 0].numpy() > x_ts)]
        for _ in range(n_t // every):
            free.step(every)
            side.append(free.centroid[:, 0].numpy() > x_ts)
        num += (np.asarray(side) * v0).sum(1)
    t = np.arange(len(num)) * every * timestep_fs
    return xr.Dataset(
        {"kappa": ("time", num / den)},
        coords={"time": ("time", t, {"units": "fs"})},
        attrs={
            "n_beads": n_beads,
            "temperature_K": temperature_K,
            "trajectories": replicas * releases,
        },
    )


def rpmd_rate(
    potential: Any,
    mass: float,
    temperature_K: float,
    n_beads: int,
    reactant_x: float,
    x_ts: float = 0.0,
    nodes: int = 16,
    replicas: int = 16,
    steps: int = 4000,
    kappa_kw: dict[str, Any] | None = None,
    timestep_fs: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """RPMD rate (Å/fs) through a 1D barrier with ``V(reactant_x) ≈ 0``: centroid free
    energy rise ΔW (Gauss–Legendre over [reactant_x, x_ts]) and plateau κ.

    Returns ``rate``, ``rate_err`` (from ΔW's error), ``delta_w``, ``kappa``,
    ``qtst_rate`` (κ = 1) and the ``force`` and ``kappa_t`` datasets.
    """
    beta = 1 / (units.kB * temperature_K)
    xi, w = gauss_grid(reactant_x, x_ts, nodes)
    force = centroid_mean_force(
        potential,
        mass,
        temperature_K,
        n_beads,
        xi,
        replicas=replicas,
        steps=steps,
        timestep_fs=timestep_fs,
        seed=seed,
    )
    force.attrs["weights"] = w
    dw, dw_err = free_energy_rise(force)
    kt = recrossing_factor(
        potential,
        mass,
        temperature_K,
        n_beads,
        x_ts,
        timestep_fs=timestep_fs,
        seed=seed,
        **(kappa_kw or {}),
    )
    kappa = float(kt["kappa"].values[-len(kt["kappa"]) // 4 :].mean())
    qtst = (
        math.exp(-beta * dw) / (2 * math.pi * HBAR * beta) / reactant_density(temperature_K, mass)
    )
    qtst *= units.fs
    return {
        "rate": kappa * qtst,
        "rate_err": kappa * qtst * beta * dw_err,
        "qtst_rate": qtst,
        "delta_w": dw,
        "delta_w_err": dw_err,
        "kappa": kappa,
        "force": force,
        "kappa_t": kt,
    }


def mass_ti_kie(
    potential: Any,
    mass_light: float,
    mass_heavy: float,
    temperature_K: float,
    n_beads: int,
    x_ts: float = 0.0,
    n_mass: int = 4,
    replicas: int = 64,
    steps: int = 4000,
    equilibrate: int = 500,
    sample_every: int = 4,
    timestep_fs: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Quantum-TST kinetic isotope effect k(m_light)/k(m_heavy) by thermodynamic
    integration over the mass (route independent of the rate calculations).

    ∂F/∂m = −⟨K⟩/m for the constrained-centroid ensemble at x‡ (K: the primitive quantum
    kinetic energy estimator); the free-particle reactant has ⟨K⟩ = 3/2β at every mass.
    So β[ΔW(m_h) − ΔW(m_l)] = −β ∫ (⟨K⟩_‡ − 3/2β) d ln m (Gauss–Legendre in ln m) and
    KIE_QTST = √(m_h/m_l) · exp(β[ΔW(m_h) − ΔW(m_l)]).
    """
    beta = 1 / (units.kB * temperature_K)
    ln_m, w = gauss_grid(math.log(mass_light), math.log(mass_heavy), n_mass)
    masses = np.exp(ln_m)
    atoms = _particles(replicas * n_mass, 1.0, np.full(replicas * n_mass, x_ts))
    atoms.set_masses(np.repeat(masses, replicas))
    cfg = PIMDConfig(
        n_beads=n_beads, temperature_K=temperature_K, timestep_fs=timestep_fs, seed=seed
    )
    per = (
        _constrained_average(
            atoms,
            potential,
            cfg,
            lambda ring: ring.kinetic_per_atom("primitive"),
            steps,
            equilibrate,
            sample_every,
        ).reshape(n_mass, replicas)
        - 1.5 / beta
    )
    excess, err = per.mean(1), per.std(1, ddof=1) / math.sqrt(replicas)
    dw_rise = -(w * excess).sum()  # ΔW(m_h) − ΔW(m_l)
    dw_err = math.sqrt(((w * err) ** 2).sum())
    kie = math.sqrt(mass_heavy / mass_light) * math.exp(beta * dw_rise)
    return {
        "kie": kie,
        "kie_err": kie * beta * dw_err,
        "delta_w_change": dw_rise,
        "kinetic_excess": xr.DataArray(
            excess, dims="mass", coords={"mass": masses}, attrs={"units": "eV"}
        ),
    }


def eckart(height: float = 0.425, width: float = 0.734 * units.Bohr) -> Eckart:
    """The symmetric Eckart barrier of Craig & Manolopoulos (2005): V₀ = 0.425 eV,
    a = 0.734 bohr (with m = 1061 mₑ: :data:`ECKART_MASS`), an H + H₂-like barrier."""
    return Eckart(height, width)


ECKART_MASS = 1061 * units._me / units._amu
"""1061 electron masses in amu (Craig & Manolopoulos 2005)."""
