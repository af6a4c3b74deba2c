"""Rates and kinetic isotope effects of a molecular reaction along a centroid coordinate.

For a proton transfer ξ(q̄) (:class:`~nnp_lab.dynamics.pimd.coordinates.ProtonTransfer`)
of one molecule, with the transition state at ξ‡ = 0 and the reactant at ξ < 0:

* **Centroid PMF** W(ξ) by umbrella sampling — every window is an independent copy of
  the molecule in ONE ring-polymer run (copies far apart), centroid bias ½κ(ξ − ξ_k)² —
  unbiased by MBAR (``pymbar``; WHAM is its histogram limit).
* **Quantum TST** (centroid TST; Voth, Chandler & Miller 1989):
  k‡ = ⟨|∇ξ|_m⟩‡ / √(2πβ) · e^{−βW(ξ‡)} / ∫_{ξ<ξ‡} e^{−βW} dξ, with
  |∇ξ|_m = √(Σ_i |∂ξ/∂r_i|²/m_i) averaged over centroids on the dividing surface.
* **RPMD rate** k = κ · k‡ (Craig & Manolopoulos 2005; Collepardo-Guevara et al. 2008):
  κ the plateau of the Bennett–Chandler transmission from RPMD trajectories released from
  ring polymers sampled at ξ̄ ≈ ξ‡ (a stiff umbrella, width written in the result).
* **Mass TI** (independent route to the quantum-TST KIE): ∂F/∂m_i = −⟨K_i⟩/m_i in the
  dividing-surface and reactant ensembles (centroid-virial K of the isotopic atom), so
  F‡(m_D) − F‡(m_H) = −∫ (⟨K⟩‡ − ⟨K⟩_r) d ln m and
  KIE = [⟨|∇ξ|_{m_H}⟩/⟨|∇ξ|_{m_D}⟩] · e^{β[F‡(m_D) − F‡(m_H)]}.

With P = 1 every route is classical (K = 3/2β; W mass-independent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from ase import Atoms, units

from nnp_lab.dynamics.pimd.coordinates import CentroidBias, ProtonTransfer, flux_factor
from nnp_lab.dynamics.pimd.rates import gauss_grid
from nnp_lab.dynamics.pimd.rpmd import PIMDConfig, RingPolymer
from nnp_lab.errors import InputError

SPACING = 40.0
"""Å between copies of the molecule (far beyond any descriptor cutoff)."""


def replicate(atoms: Atoms, n: int, spacing: float = SPACING) -> Atoms:
    """``n`` copies of a molecule along x, ``spacing`` Å apart (masses kept)."""
    if atoms.pbc.any():
        raise InputError("replicate needs a molecule without periodic boundaries")
    if n < 1:
        raise InputError("need at least one copy")
    out = Atoms()
    for k in range(n):
        c = atoms.copy()
        c.positions = c.positions + np.array([k * spacing, 0.0, 0.0])
        out += c
    out.set_masses(np.tile(atoms.get_masses(), n))
    return out


def _coordinate(triplet: Sequence[int], n_atoms: int, n: int) -> ProtonTransfer:
    t = np.asarray(triplet, dtype=int)
    if t.shape != (3,) or t.min() < 0 or t.max() >= n_atoms:
        raise InputError(f"triplet must be three atom indices in 0…{n_atoms - 1}, got {triplet}")
    return ProtonTransfer([t + k * n_atoms for k in range(n)])


def _at(molecule: Atoms, geometry: Atoms | None) -> Atoms:
    """``molecule`` (its masses) moved to ``geometry``'s positions."""
    if geometry is None:
        return molecule
    if len(geometry) != len(molecule) or (geometry.numbers != molecule.numbers).any():
        raise InputError("the start geometry must have the molecule's atoms in its order")
    out = molecule.copy()
    out.positions = geometry.positions
    return out


def _copies(molecule: Atoms, masses: np.ndarray) -> Atoms:
    """One copy per row of ``masses`` (n, N)."""
    system = replicate(molecule, len(masses))
    system.set_masses(np.asarray(masses, dtype=float).reshape(-1))
    return system


ESCAPE = 2.0
"""Å: a centroid proton farther than this from both donor and acceptor has escaped."""
SPREAD_LIMIT = 6.0
"""eV/Å: a copy whose committee force spread exceeds this on some bead is outside the
potential's domain. Bead forces on the hydrogens reach 10–20 eV/Å; the malonaldehyde
committee's spread stays below ~2 eV/Å in its domain and jumps to 15–50 eV/Å where it
extrapolates into an artificial hole (the molecule then flies apart)."""
TAU_CENTROID_FS = 20.0
"""Centroid thermostat time of the sampling runs (PILE-L): short, so windows started off
their centre forget the work the bias did on them within the equilibration."""


def _sampling_config(
    n_beads: int, temperature_K: float, timestep_fs: float, seed: int
) -> PIMDConfig:
    return PIMDConfig(
        n_beads=n_beads,
        temperature_K=temperature_K,
        timestep_fs=timestep_fs,
        tau_centroid_fs=TAU_CENTROID_FS,
        seed=seed,
    )


def sample_centroids(
    system: Atoms,
    potential: Any,
    bias: CentroidBias,
    config: PIMDConfig,
    steps: int,
    equilibrate: int,
    sample_every: int,
    kinetic: bool = False,
    escape: float | None = None,
    spread_limit: float | None = None,
) -> dict[str, np.ndarray]:
    """Biased ring-polymer sampling: ξ̄ of every coordinate per sample (n_samples, n),
    the flux factor per sample, and with ``kinetic`` the centroid-virial kinetic energy
    of every atom (n_samples, N). With ``escape`` (Å) a copy whose centroid proton gets
    farther than that from both its partners, that swells by 1.5 Å (an atom's centroid
    from the copy's centre), or — for a committee — whose largest bead force spread
    exceeds ``spread_limit`` (eV/Å) has left the potential's domain: it
    restarts from its start geometry with fresh momenta (the stop-and-ask rule of the
    explorers, applied to production sampling; later snapshots can sit at the edge of an
    artificial hole and fail again at once). More than one restart per 100
    samples of a copy (at least 2 in all) is an error. ``restarts`` counts them."""
    ring = RingPolymer(system, potential, config, bias=bias)
    xi, flux, kin = [], [], []
    coord = bias.coordinate
    n_copy, per = len(coord), len(system) // len(coord)
    good = ring.q.clone()  # the start: a copy that leaves the domain begins again there
    restarts = 0

    def radius(c: torch.Tensor) -> torch.Tensor:
        x = c.view(n_copy, per, 3)
        return (x - x.mean(1, keepdim=True)).norm(dim=-1).amax(1)

    max_radius = radius(ring.centroid) + 1.5  # a copy that swells by 1.5 Å is coming apart
    n_equil = -(-equilibrate // sample_every)  # equilibration chunks: checked, not kept
    for n_chunk in range(n_equil + max(1, steps // sample_every)):
        ring.step(sample_every)
        c = ring.centroid
        if escape is not None:
            lost = (_partner_distance(coord, c) > escape) | (radius(c) > max_radius)
            if spread_limit is not None and "force_spread" in ring.results:
                spread = ring.results["force_spread"].view(ring.n_beads, n_copy, per)
                lost |= spread.amax((0, 2)) > spread_limit
            bad = torch.nonzero(lost).flatten()
            if len(bad):
                restarts += len(bad)
                if restarts > max(2, n_copy * steps // (sample_every * 100)):
                    raise InputError(
                        f"{restarts} copies left the potential's domain (a proton more than "
                        f"{escape} Å from both partners, or a committee force spread above "
                        f"{spread_limit} eV/Å) by step {ring.step_count}: train the potential "
                        "on these geometries (umbrella-window explorers)"
                    )
                atoms = (bad.view(-1, 1) * per + torch.arange(per)).flatten()
                ring.reset_atoms(atoms, good)
                c = ring.centroid
        if n_chunk < n_equil:
            continue
        xi.append(coord.value(c).numpy())
        flux.append(flux_factor(bias.coordinate, c, ring.masses).numpy())
        if kinetic:
            kin.append(ring.kinetic_per_atom("virial").numpy())
    out = {"xi": np.asarray(xi), "flux": np.asarray(flux), "restarts": restarts}
    if kinetic:
        out["kinetic"] = np.asarray(kin)
    out["q"] = ring.q.numpy().copy()
    return out


def _quiet_pymbar() -> None:
    """pymbar logs an optional-JAX banner and generic caveats at WARNING on import/use."""
    import logging

    logging.getLogger("pymbar").setLevel(logging.ERROR)


def _subsample(x: np.ndarray) -> np.ndarray:
    """Indices of uncorrelated samples (pymbar's statistical inefficiency)."""
    _quiet_pymbar()
    from pymbar import timeseries

    if len(x) < 10 or np.ptp(x) == 0:
        return np.arange(len(x))
    return np.asarray(timeseries.subsample_correlated_data(x))


def mbar_pmf(
    xi: np.ndarray,
    centers: np.ndarray,
    kappa: float,
    temperature_K: float,
    bin_width: float = 0.025,
) -> xr.Dataset:
    """W(ξ) (eV, zero at its minimum) from umbrella samples ``xi`` (n_samples, windows)
    by MBAR; bins are centred on multiples of ``bin_width`` (so ξ = 0 is a bin centre).
    ``pmf_err`` is the standard error relative to the best-sampled bin (``attrs``
    ``error_reference``); samples are thinned to uncorrelated ones per window first."""
    _quiet_pymbar()
    import pymbar

    xi = np.asarray(xi, dtype=float)
    centers = np.asarray(centers, dtype=float)
    if xi.ndim != 2 or xi.shape[1] != len(centers):
        raise InputError("xi must be (samples, windows) with one column per centre")
    beta = 1.0 / (units.kB * temperature_K)
    kept = [xi[_subsample(xi[:, k]), k] for k in range(len(centers))]
    n_k = np.array([len(s) for s in kept])
    x_n = np.concatenate(kept)
    u_kn = beta * 0.5 * kappa * (x_n[None, :] - centers[:, None]) ** 2
    lo = math.floor(x_n.min() / bin_width - 0.5) + 0.5
    hi = math.ceil(x_n.max() / bin_width + 0.5) - 0.5
    edges = np.arange(lo, hi + 1e-9, 1.0) * bin_width
    mids = 0.5 * (edges[1:] + edges[:-1])
    counts = np.histogram(x_n, bins=edges)[0]
    fes = pymbar.FES(u_kn, n_k, verbose=False)
    fes.generate_fes(
        np.zeros_like(x_n), x_n, fes_type="histogram", histogram_parameters={"bin_edges": edges}
    )
    ok = counts > 0
    ref = mids[np.argmax(counts)]  # errors relative to the best-sampled bin
    res = fes.get_fes(
        mids[ok],
        reference_point="from-specified",
        fes_reference=float(ref),
        uncertainty_method="analytical",
    )
    w = np.full(len(mids), np.nan)
    dw = np.full(len(mids), np.nan)
    w[ok], dw[ok] = res["f_i"] / beta, res["df_i"] / beta
    w -= np.nanmin(w)
    return xr.Dataset(
        {
            "pmf": ("xi", w, {"units": "eV", "long_name": "centroid potential of mean force"}),
            "pmf_err": ("xi", dw, {"units": "eV"}),
            "counts": ("xi", counts),
        },
        coords={"xi": ("xi", mids, {"units": "Å"})},
        attrs={
            "temperature_K": temperature_K,
            "kappa_eV_per_A2": kappa,
            "centers": centers.tolist(),
            "uncorrelated_samples": n_k.tolist(),
            "error_reference": float(ref),
        },
    )


def tst_rate(pmf: xr.Dataset, flux: float, temperature_K: float, xi_ts: float = 0.0) -> float:
    """k‡ = flux/√(2πβ) · e^{−βW(ξ‡)} / ∫_{ξ<ξ‡} e^{−βW} dξ in 1/ps (``flux`` in 1/√amu)."""
    beta = 1.0 / (units.kB * temperature_K)
    x, w = pmf["xi"].values, pmf["pmf"].values
    ok = np.isfinite(w)
    x, w = x[ok], w[ok]
    if not (x.min() < xi_ts < x.max()):
        raise InputError(f"the PMF must cover the dividing surface ξ = {xi_ts}")
    w_ts = float(np.interp(xi_ts, x, w))
    below = x < xi_ts
    width = float(np.median(np.diff(x)))
    z = float(np.exp(-beta * (w[below] - w_ts)).sum() * width)
    k = flux / math.sqrt(2 * math.pi * beta) / z  # 1/ASE time
    return k * units.fs * 1000.0


def transmission(
    molecule: Atoms,
    potential: Any,
    triplet: Sequence[int],
    temperature_K: float,
    n_beads: int,
    copies: int = 16,
    releases: int = 4,
    t_max_fs: float = 40.0,
    timestep_fs: float = 0.25,
    kappa_ts: float = 50.0,
    decorrelate: int = 200,
    seed: int = 0,
    ts: Atoms | None = None,
) -> xr.Dataset:
    """Bennett–Chandler κ(t) = ⟨v̄ξ θ(ξ̄(t))⟩ / ⟨v̄ξ θ(v̄ξ)⟩ of RPMD trajectories (no
    thermostat) released with thermal momenta from ring polymers sampled by a stiff
    centroid umbrella at ξ̄ = 0; also the flux factor ⟨|∇ξ|_m⟩ of those centroids.
    ``ts``: a geometry at the dividing surface to start from (default ``molecule``)."""
    n = len(molecule)
    system = replicate(_at(molecule, ts), copies)
    coord = _coordinate(triplet, n, copies)
    cfg = _sampling_config(n_beads, temperature_K, timestep_fs, seed)
    sampler = RingPolymer(system, potential, cfg, bias=CentroidBias(coord, 0.0, kappa_ts))
    sampler.step(2 * decorrelate)
    n_t = round(t_max_fs / timestep_fs)
    every = max(1, n_t // 100)
    num = np.zeros(n_t // every + 1)
    den = 0.0
    start_xi, flux = [], []
    masses = sampler.masses
    excluded = 0
    for r in range(releases):
        sampler.step(decorrelate)
        free = RingPolymer(
            system,
            potential,
            cfg.model_copy(update={"thermostat": "none", "seed": seed * 1000 + r + 1}),
            positions=sampler.q.clone(),
        )
        xi0, g = coord.gradient(free.centroid)
        v_c = free.p.mean(0) / masses.view(-1, 1)  # centroid velocities (N, 3)
        v0 = (g * v_c.unsqueeze(0)).sum((-1, -2)).numpy()
        valid = _bound(coord, free.centroid)
        side = [coord.value(free.centroid).numpy() > 0]
        for _ in range(n_t // every):
            free.step(every)
            side.append(coord.value(free.centroid).numpy() > 0)
            valid &= _bound(coord, free.centroid)
        excluded += int((~valid).sum())
        v0 = v0 * valid  # a trajectory whose proton escaped (potential hole) is dropped
        start_xi.append(xi0.numpy()[valid])
        flux.append(flux_factor(coord, sampler.centroid, masses).numpy()[valid])
        den += float((v0 * (v0 > 0)).sum())
        num += (np.asarray(side) * v0).sum(1)
    t = np.arange(len(num)) * every * timestep_fs
    x0 = np.concatenate(start_xi)
    return xr.Dataset(
        {"kappa": ("time", num / den)},
        coords={"time": ("time", t, {"units": "fs"})},
        attrs={
            "n_beads": n_beads,
            "temperature_K": temperature_K,
            "trajectories": copies * releases,
            "flux_factor": float(np.mean(np.concatenate(flux))),
            "start_xi_rms_A": float(np.sqrt(np.mean(x0**2))),
            "excluded_trajectories": excluded,
        },
    )


def _partner_distance(coord: ProtonTransfer, centroid: torch.Tensor) -> torch.Tensor:
    """Per coordinate: distance of the centroid proton from the nearer of its partners."""
    d, h, a = coord.triplets.T
    return torch.minimum(
        (centroid[h] - centroid[d]).norm(dim=-1), (centroid[h] - centroid[a]).norm(dim=-1)
    )


def _bound(coord: ProtonTransfer, centroid: torch.Tensor) -> np.ndarray:
    """Per coordinate: is the centroid proton within :data:`ESCAPE` of a partner?"""
    return (_partner_distance(coord, centroid) <= ESCAPE).numpy()


def plateau(kappa_t: xr.Dataset) -> float:
    """κ: the mean of the last quarter of κ(t)."""
    k = kappa_t["kappa"].values
    return float(k[-max(1, len(k) // 4) :].mean())


def umbrella_pmf(
    molecule: Atoms,
    potential: Any,
    triplet: Sequence[int],
    temperature_K: float,
    n_beads: int,
    centers: Sequence[float],
    kappa: float = 4.0,
    steps: int = 2000,
    equilibrate: int = 200,
    sample_every: int = 5,
    timestep_fs: float = 0.25,
    seed: int = 0,
    starts: Sequence[Atoms] | None = None,
    replicas: int = 1,
) -> xr.Dataset:
    """Centroid PMF along ξ: ``replicas`` copies of ``molecule`` per window, all in one
    run, then MBAR. ``starts`` (optional): per-window start geometries (default:
    ``molecule`` itself)."""
    centers = np.asarray(centers, dtype=float)
    if replicas < 1:
        raise InputError("need replicas ≥ 1")
    n = len(molecule)
    n_copy = len(centers) * replicas
    system = replicate(molecule, n_copy)
    if starts is not None:
        if len(starts) != len(centers):
            raise InputError("one start geometry per window")
        system.positions = np.concatenate(
            [starts[k // replicas].positions + np.array([k * SPACING, 0, 0]) for k in range(n_copy)]
        )
    coord = _coordinate(triplet, n, n_copy)
    cfg = _sampling_config(n_beads, temperature_K, timestep_fs, seed)
    bias = CentroidBias(coord, np.repeat(centers, replicas), kappa)
    s = sample_centroids(
        system,
        potential,
        bias,
        cfg,
        steps,
        equilibrate,
        sample_every,
        escape=ESCAPE,
        spread_limit=SPREAD_LIMIT,
    )
    # each replica's time series is its own stretch of samples of its window
    xi = s["xi"].reshape(len(s["xi"]), len(centers), replicas)
    xi = np.concatenate(list(xi.transpose(2, 0, 1)), axis=0)
    pmf = mbar_pmf(xi, centers, kappa, temperature_K)
    pmf.attrs.update(
        n_beads=n_beads,
        steps=steps,
        timestep_fs=timestep_fs,
        replicas=replicas,
        restarts=s["restarts"],
    )
    return pmf


def isotope_ti(
    molecule: Atoms,
    potential: Any,
    triplet: Sequence[int],
    temperature_K: float,
    n_beads: int,
    mass_heavy: float,
    n_mass: int = 3,
    replicas: int = 4,
    steps: int = 2000,
    equilibrate: int = 200,
    sample_every: int = 5,
    timestep_fs: float = 0.25,
    kappa_ts: float = 50.0,
    wall: float = -0.3,
    seed: int = 0,
    ts: Atoms | None = None,
) -> dict[str, Any]:
    """Quantum-TST KIE k(m_H)/k(m_heavy) of the triplet's hydrogen by mass TI.

    One run holds ``replicas`` copies per Gauss–Legendre node in ln m for each of the two
    ensembles: dividing surface (stiff umbrella at ξ̄ = 0) and reactant (a one-sided wall
    at ξ̄ = ``wall`` keeps it from crossing). The dividing-surface copies start at ``ts``
    (default ``molecule``), the reactant copies at ``molecule``."""
    beta = 1.0 / (units.kB * temperature_K)
    h = int(triplet[1])
    m_light = float(molecule.get_masses()[h])
    if mass_heavy <= m_light:
        raise InputError("mass_heavy must exceed the hydrogen's mass")
    ln_m, wts = gauss_grid(math.log(m_light), math.log(mass_heavy), n_mass)
    base = molecule.get_masses()
    rows = []
    for _ensemble in range(2):
        for m in np.exp(ln_m):
            for _ in range(replicas):
                row = base.copy()
                row[h] = m
                rows.append(row)
    system = _copies(molecule, np.asarray(rows))
    n_copy = len(rows)
    n = len(molecule)
    start_ts = _at(molecule, ts).positions
    pos = system.positions.reshape(n_copy, n, 3)
    pos[: n_copy // 2] = start_ts + (pos[: n_copy // 2] - molecule.positions)
    system.positions = pos.reshape(-1, 3)
    coord = _coordinate(triplet, n, n_copy)
    half_copies = n_copy // 2
    centers = np.r_[np.zeros(half_copies), np.full(half_copies, wall)]
    # the dividing-surface copies get a two-sided umbrella, the reactant copies a wall
    bias = CentroidBias(
        coord, centers, kappa_ts, side=["both"] * half_copies + ["above"] * half_copies
    )
    cfg = _sampling_config(n_beads, temperature_K, timestep_fs, seed)
    s = sample_centroids(
        system,
        potential,
        bias,
        cfg,
        steps,
        equilibrate,
        sample_every,
        kinetic=True,
        escape=ESCAPE,
        spread_limit=SPREAD_LIMIT,
    )
    k_h = s["kinetic"][:, h::n]  # (samples, copies): the isotopic atom of every copy
    k_h = k_h.reshape(len(k_h), 2, n_mass, replicas)
    per_copy = k_h.mean(0)  # (2, n_mass, replicas)
    mean = per_copy.mean(-1)
    err = per_copy.std(-1, ddof=1) / math.sqrt(replicas) if replicas > 1 else 0 * mean
    excess = mean[0] - mean[1]  # ⟨K⟩‡ − ⟨K⟩_r per mass node
    excess_err = np.sqrt(err[0] ** 2 + err[1] ** 2)
    dF = -(wts * excess).sum()  # F‡(m_heavy) − F‡(m_light)
    dF_err = math.sqrt(((wts * excess_err) ** 2).sum())
    q_ts = s["q"].mean(0)[: half_copies * n].reshape(half_copies, n, 3)
    one = ProtonTransfer([triplet])
    m_l = torch.as_tensor(base.copy())
    m_h = m_l.clone()
    m_h[h] = mass_heavy
    ratio = [
        float(
            flux_factor(one, torch.as_tensor(c), m_l)[0]
            / flux_factor(one, torch.as_tensor(c), m_h)[0]
        )
        for c in q_ts
    ]
    flux_ratio = float(np.mean(ratio))
    kie = flux_ratio * math.exp(beta * dF)
    xi_ts = s["xi"][:, :half_copies]
    return {
        "kie": kie,
        "kie_err": kie * beta * dF_err,
        "delta_f": dF,
        "delta_f_err": dF_err,
        "flux_ratio": flux_ratio,
        "kinetic": xr.Dataset(
            {
                "kinetic_ts": ("mass", mean[0], {"units": "eV"}),
                "kinetic_reactant": ("mass", mean[1], {"units": "eV"}),
                "kinetic_err": ("mass", excess_err, {"units": "eV"}),
            },
            coords={"mass": ("mass", np.exp(ln_m), {"units": "amu"})},
        ),
        "ts_xi_rms": float(np.sqrt((xi_ts**2).mean())),
        "restarts": s["restarts"],
        "reactant_xi_max": float(s["xi"][:, half_copies:].max()),
    }
