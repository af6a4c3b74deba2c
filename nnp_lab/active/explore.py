"""Explorers: Langevin MD on the committee-mean potential with the stop-and-ask rule.

Every MD step evaluates the whole committee (one pass), so the uncertainty
``u = max over atoms of the calibrated force spread`` is known at every step for free.
Every ``sample_every`` steps the frame is judged:

* ``u > threshold``  → the frame is a candidate for a reference calculation;
* ``u ≤ threshold``  → the frame is trusted and becomes the restart point.

Independently of sampling, a step with ``u > hard_limit`` (or a non-finite energy, or two
atoms closer than ``min_distance``) stops the trajectory before it can wander into
unphysical regions: it restarts from the last trusted frame with fresh Maxwell–Boltzmann
velocities, at most ``max_restarts`` times. Nothing beyond the hard limit is ever queued.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from nnp_lab.dynamics.calculator import CommitteeCalculator
from nnp_lab.errors import InputError


class UmbrellaConfig(BaseModel):
    """Umbrella windows for explorers: ½κ(ξ − c_k)² on the centroid's
    ξ = d(donor–H) − d(acceptor–H); start structure k gets window centre c_k."""

    model_config = ConfigDict(extra="forbid")

    triplet: tuple[int, int, int] = Field(description="donor, hydrogen, acceptor indices")
    centers: list[float] = Field(min_length=1, description="Å, one per start structure")
    kappa: float = Field(3.0, gt=0, description="eV/Å²")


class ExploreConfig(BaseModel):
    """Settings of the MD explorers (one trajectory per start structure and temperature)."""

    model_config = ConfigDict(extra="forbid")

    temperatures: list[float] = Field(default_factory=lambda: [300.0, 600.0, 900.0], min_length=1)
    ramp: bool = Field(
        False, description="one trajectory per start ramping linearly through temperatures"
    )
    steps: int = Field(400, ge=1, description="MD steps per trajectory")
    timestep_fs: float = Field(2.0, gt=0)
    friction: float = Field(0.02, gt=0, description="Langevin friction (1/fs)")
    sample_every: int = Field(10, ge=1, description="steps between judged frames")
    threshold: float = Field(0.1, gt=0, description="eV/Å: above → queue for labelling")
    hard_limit: float = Field(1.0, gt=0, description="eV/Å: above → stop and restart")
    max_restarts: int = Field(3, ge=0)
    min_distance: float = Field(0.6, gt=0, description="Å: closer atoms stop the trajectory")
    beads: int = Field(
        1,
        ge=1,
        description="ring-polymer beads: > 1 explores with PIMD (quantum nuclei, PILE-L); "
        "every bead is judged and the most uncertain bead of a frame is the candidate",
    )
    umbrella: UmbrellaConfig | None = Field(
        None,
        description="bias along a proton-transfer coordinate: start k explores its window "
        "(ring-polymer explorer, any beads); reaches barrier regions MD never visits",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _limits(self) -> ExploreConfig:
        if self.hard_limit <= self.threshold:
            raise ValueError(
                f"hard_limit ({self.hard_limit}) must be larger than threshold ({self.threshold})"
            )
        if any(t < 0 for t in self.temperatures):
            raise ValueError("temperatures must be >= 0 K")
        return self


@dataclass
class Exploration:
    """What the explorers found.

    ``candidates`` carry ``info``: ``uncertainty`` (eV/Å), ``energy_std`` (eV),
    ``hot_atom`` (the atom with the largest spread),
    ``md_temperature_K``, ``md_step``, ``trajectory``; ``uncertainties`` holds ``u`` of
    every judged frame (candidates and trusted), ``restarts`` the hard-limit stops.
    """

    candidates: list[Atoms] = field(default_factory=list)
    uncertainties: list[float] = field(default_factory=list)
    frames_judged: int = 0
    steps: int = 0
    restarts: int = 0
    trajectories: int = 0
    stopped_trajectories: int = 0


def _min_distance(atoms: Atoms, limit: float) -> float:
    from nnp_lab.kernels.neighbors import structure_pairs

    _, _, _, d = structure_pairs(atoms.positions, atoms.cell.array, atoms.pbc, max(limit, 1.0))
    return float(d.min()) if len(d) else np.inf


def _thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, temperature, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    vd.Stationary(atoms)


def run_trajectory(
    committee: Any,
    start: Atoms,
    temperatures: Sequence[float],
    config: ExploreConfig,
    seed: int,
    trajectory: int,
    force_scale: float,
    result: Exploration,
) -> None:
    """One Langevin trajectory (linear ramp through ``temperatures``) into ``result``."""
    if config.beads > 1 or config.umbrella is not None:
        run_ring_trajectory(
            committee, start, temperatures, config, seed, trajectory, force_scale, result
        )
        return
    from ase.md.langevin import Langevin

    rng = np.random.default_rng(seed)
    temps = np.asarray(temperatures, dtype=float)
    system = Atoms(numbers=start.numbers, positions=start.positions, cell=start.cell, pbc=start.pbc)
    calc = CommitteeCalculator(committee, force_scale=force_scale)
    system.calc = calc

    def temperature_at(step: int) -> float:
        if temps.size == 1:
            return float(temps[0])
        return float(np.interp(step, np.linspace(0, config.steps, temps.size), temps))

    _thermalize(system, temperature_at(0), rng)
    dyn = Langevin(
        system,
        timestep=config.timestep_fs * units.fs,
        temperature_K=temperature_at(0),
        friction=config.friction / units.fs,
        fixcm=False,
        rng=rng,
    )
    trusted = system.positions.copy()
    restarts = 0
    result.trajectories += 1
    step = 0
    while step < config.steps:
        step += 1
        dyn.set_temperature(temperature_K=temperature_at(step))
        dyn.run(1)
        result.steps += 1
        u = calc.results.get("max_force_spread", np.inf)
        energy = calc.results.get("energy", np.nan)
        bad = not (np.isfinite(u) and np.isfinite(energy)) or u > config.hard_limit
        if not bad and step % config.sample_every == 0:
            bad = _min_distance(system, config.min_distance) < config.min_distance
        if bad:
            restarts += 1
            result.restarts += 1
            if restarts > config.max_restarts:
                result.stopped_trajectories += 1
                break
            system.positions = trusted
            _thermalize(system, temperature_at(step), rng)
            continue
        if step % config.sample_every:
            continue
        result.frames_judged += 1
        result.uncertainties.append(float(u))
        if u > config.threshold:
            frame = Atoms(
                numbers=system.numbers,
                positions=system.positions.copy(),
                cell=system.cell.copy(),
                pbc=system.pbc.copy(),
            )
            frame.info.update(
                uncertainty=float(u),
                energy_std=float(calc.results["energy_std"]),
                hot_atom=int(np.argmax(calc.results["force_spread"])),
                md_temperature_K=temperature_at(step),
                md_step=step,
                trajectory=trajectory,
                source=f"explore(traj={trajectory}, T={temperature_at(step):.0f} K, step={step})",
            )
            result.candidates.append(frame)
        else:
            trusted = system.positions.copy()
    system.calc = None


def run_ring_trajectory(
    committee: Any,
    start: Atoms,
    temperatures: Sequence[float],
    config: ExploreConfig,
    seed: int,
    trajectory: int,
    force_scale: float,
    result: Exploration,
) -> None:
    """One ring-polymer (PIMD) exploration at the mean of ``temperatures``: quantum
    delocalisation reaches the geometries a PIMD run with the potential will visit, which
    classical MD at the same temperature never does (zero-point motion). Same
    stop-and-ask rule as :func:`run_trajectory`, applied to the worst bead."""
    from nnp_lab.dynamics.pimd.coordinates import CentroidBias, ProtonTransfer
    from nnp_lab.dynamics.pimd.rpmd import PIMDConfig, RingPolymer

    if start.pbc.any():
        raise InputError("ring-polymer exploration supports molecules (no periodic cell) only")
    temperature = float(np.mean(temperatures))
    bias = None
    window = ""
    if config.umbrella is not None:
        centre = float(start.info["umbrella_center"])
        coord = ProtonTransfer([config.umbrella.triplet])
        coord.check(len(start))
        bias = CentroidBias(coord, centre, config.umbrella.kappa)
        window = f", window ξ={centre:+.2f} Å"

    def ring(positions: Any, n_restart: int) -> RingPolymer:
        cfg = PIMDConfig(
            n_beads=config.beads,
            temperature_K=temperature,
            timestep_fs=config.timestep_fs,
            tau_centroid_fs=20.0,
            seed=int(np.random.default_rng([seed, n_restart]).integers(2**31)),
        )
        return RingPolymer(start, committee, cfg, positions=positions, bias=bias)

    poly = ring(None, 0)
    trusted = poly.q.clone()
    restarts = 0
    result.trajectories += 1
    for step in range(1, config.steps + 1):
        poly.step()
        result.steps += 1
        spread = force_scale * poly.results["force_spread"]  # (P, N)
        u = float(spread.max())
        bad = not (np.isfinite(u) and bool(torch.isfinite(poly.results["energy"]).all()))
        bad = bad or u > config.hard_limit
        worst = int(spread.max(1).values.argmax()) if not bad else 0
        frame = Atoms(numbers=start.numbers, positions=poly.q[worst].numpy().copy())
        if not bad and step % config.sample_every == 0:
            bad = _min_distance(frame, config.min_distance) < config.min_distance
        if bad:
            restarts += 1
            result.restarts += 1
            if restarts > config.max_restarts:
                result.stopped_trajectories += 1
                break
            poly = ring(trusted.numpy(), restarts)
            continue
        if step % config.sample_every:
            continue
        result.frames_judged += 1
        result.uncertainties.append(u)
        if u > config.threshold:
            frame.info.update(
                uncertainty=u,
                energy_std=float(poly.results["energy_std"][worst]),
                hot_atom=int(spread[worst].argmax()),
                md_temperature_K=temperature,
                md_step=step,
                trajectory=trajectory,
                source=f"explore(traj={trajectory}, PIMD P={config.beads}, "
                f"T={temperature:.0f} K, step={step}, bead={worst}{window})",
            )
            result.candidates.append(frame)
        else:
            trusted = poly.q.clone()


def explore(
    committee: Any,
    starts: Sequence[Atoms],
    config: ExploreConfig | dict | None = None,
    force_scale: float = 1.0,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    show_progress: bool = True,
) -> Exploration:
    """Run the explorers from every start structure; returns candidates and statistics.

    ``force_scale`` is the calibration factor applied to the spread before comparing it
    with ``threshold``/``hard_limit``; ``seed`` overrides ``config.seed`` (the active
    learning loop passes one per iteration). ``progress(done, total)`` after each
    trajectory; an exception raised by it propagates.
    """
    cfg = config if isinstance(config, ExploreConfig) else ExploreConfig(**(config or {}))
    starts = list(starts)
    if not starts:
        raise InputError("explore needs at least one start structure")
    if cfg.umbrella is not None:
        if len(cfg.umbrella.centers) != len(starts):
            raise InputError(
                f"umbrella needs one window centre per start structure: "
                f"{len(cfg.umbrella.centers)} centres, {len(starts)} starts"
            )
        starts = [s.copy() for s in starts]
        for s, c in zip(starts, cfg.umbrella.centers):
            s.info["umbrella_center"] = c
    base = cfg.seed if seed is None else int(seed)
    plans = (
        [(s, cfg.temperatures) for s in range(len(starts))]
        if cfg.ramp
        else [(s, [t]) for s in range(len(starts)) for t in cfg.temperatures]
    )
    result = Exploration()
    with tqdm(total=len(plans), desc="exploring", unit="traj", disable=not show_progress) as bar:
        for n, (s, temps) in enumerate(plans):
            run_trajectory(
                committee,
                starts[s],
                temps,
                cfg,
                seed=int(np.random.default_rng([base, n]).integers(2**31)),
                trajectory=n,
                force_scale=force_scale,
                result=result,
            )
            bar.update(1)
            if progress is not None:
                progress(n + 1, len(plans))
    return result
