"""Ring-polymer molecular dynamics: PIMD sampling and RPMD real-time dynamics.

One step (OBABO, every operator on all P beads at once):

    O(dt/2)  thermostat on the normal-mode momenta (PILE-L / PILE-G / none)
    B(dt/2)  p ← p + dt/2 · f(q)           (forces of all beads: ONE potential call)
    A(dt)    exact (or Cayley) free ring-polymer step in normal modes
    B(dt/2), O(dt/2)

With P = 1 and no thermostat this is velocity Verlet. Units are ASE's (eV, Å, amu); the
public settings are in fs and K. Estimators per sample: bead-averaged potential, primitive
and centroid-virial kinetic energies and the total energies built on them, the spring
energy, the radius of gyration of every atom's ring, and the ring-polymer Hamiltonian
(plus the heat the thermostat removed: conserved with any thermostat).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from ase import Atoms, units
from pydantic import BaseModel, ConfigDict, Field

from nnp_lab._atomic import atomic_write
from nnp_lab.dynamics.pimd.beads import BeadEvaluator, bead_evaluator
from nnp_lab.dynamics.pimd.normal_modes import (
    free_step_coefficients,
    mode_frequencies,
    normal_mode_matrix,
    ring_polymer_frequency,
    to_beads,
    to_modes,
)
from nnp_lab.dynamics.pimd.thermostats import PILE
from nnp_lab.errors import InputError

DEUTERIUM_MASS = 2.01410177812
"""amu (CODATA 2018)."""


class PIMDConfig(BaseModel):
    """Settings of a ring-polymer run."""

    model_config = ConfigDict(extra="forbid")

    n_beads: int = Field(ge=1)
    temperature_K: float = Field(gt=0)
    timestep_fs: float = Field(0.25, gt=0)
    thermostat: Literal["pile_l", "pile_g", "none"] = "pile_l"
    tau_centroid_fs: float = Field(100.0, gt=0, description="centroid thermostat time")
    pile_lambda: float = Field(1.0, gt=0, description="internal modes: γ_k = 2 λ ω_k")
    thermostat_centroid: bool = Field(True, description="False: thermostatted RPMD")
    free_step: Literal["standard", "cayley"] = "standard"
    seed: int = 0


def with_isotope(atoms: Atoms, indices: list[int], mass: float = DEUTERIUM_MASS) -> Atoms:
    """A copy of ``atoms`` whose atoms at ``indices`` carry ``mass`` (default: H → D).

    The potential is mass-independent (Born–Oppenheimer): only the masses change.
    """
    out = atoms.copy()
    masses = out.get_masses()
    for i in indices:
        if not 0 <= i < len(out):
            raise InputError(f"isotope index {i} outside 0…{len(out) - 1}")
    masses[list(indices)] = mass
    out.set_masses(masses)
    return out


class RingPolymer:
    """The state and propagator of a P-bead ring polymer of ``atoms`` on ``potential``.

    Args:
        atoms: the system; its masses (``atoms.get_masses()``, so :func:`with_isotope`
            works) and its positions (every bead starts there unless ``positions``).
        potential: nnp-lab potential/committee (or file), ASE calculator, or torch energy
            function of bead positions — see :func:`~nnp_lab.dynamics.pimd.beads.bead_evaluator`.
        config: :class:`PIMDConfig` or its fields.
        positions: optional initial bead positions (P, N, 3).
        momenta: ``"thermal"`` (Maxwell–Boltzmann at P T, the bead ensemble), ``"atoms"``
            (every bead gets ``atoms.get_momenta()``) or an array (P, N, 3).
        fixed_centroid: optional bool mask (N, 3): those centroid coordinates stay where
            they start (constrained-centroid sampling: the mean force on them,
            :meth:`centroid_force`, is minus the gradient of the centroid free energy).
        bias: optional centroid bias, centroid (N, 3) → (energy eV, force (N, 3)), e.g. a
            :class:`~nnp_lab.dynamics.pimd.coordinates.CentroidBias` umbrella: it enters
            the Hamiltonian as P·U(q̄), so every bead feels the full force and centroids
            are weighted by e^{−βU}. ``results["forces"]`` stay the potential's alone.
    """

    def __init__(
        self,
        atoms: Atoms,
        potential: Any,
        config: PIMDConfig | dict[str, Any],
        positions: np.ndarray | torch.Tensor | None = None,
        momenta: str | np.ndarray | torch.Tensor = "thermal",
        fixed_centroid: np.ndarray | None = None,
        bias: Callable[[torch.Tensor], tuple[float, torch.Tensor]] | None = None,
    ):
        self.config = config if isinstance(config, PIMDConfig) else PIMDConfig(**config)
        cfg = self.config
        if len(atoms) == 0:
            raise InputError("atoms is empty")
        self.atoms = atoms.copy()
        self.n_beads, self.n_atoms = cfg.n_beads, len(atoms)
        self.masses = torch.as_tensor(atoms.get_masses(), dtype=torch.float64)
        if not (self.masses > 0).all():
            raise InputError("every atom needs a positive mass")
        self.beta = 1.0 / (units.kB * cfg.temperature_K)
        self.dt = cfg.timestep_fs * units.fs
        self.omega_p = ring_polymer_frequency(cfg.n_beads, cfg.temperature_K)
        self.omega = mode_frequencies(cfg.n_beads, cfg.temperature_K)
        self.c = normal_mode_matrix(cfg.n_beads)
        self.free = free_step_coefficients(self.omega, self.masses, self.dt, cfg.free_step)
        self.thermostat = PILE(
            cfg.thermostat,
            self.omega,
            self.masses,
            cfg.temperature_K,
            self.dt / 2,
            cfg.tau_centroid_fs * units.fs,
            cfg.pile_lambda,
            cfg.thermostat_centroid,
        )
        self.evaluate: BeadEvaluator = bead_evaluator(potential, self.atoms, cfg.n_beads)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        shape = (cfg.n_beads, self.n_atoms, 3)
        if positions is None:
            q = torch.as_tensor(atoms.positions, dtype=torch.float64).expand(shape).clone()
        else:
            q = torch.as_tensor(np.asarray(positions), dtype=torch.float64).clone()
            if q.shape != shape:
                raise InputError(f"positions must have shape {shape}, got {tuple(q.shape)}")
        if isinstance(momenta, str):
            if momenta == "thermal":
                sigma = torch.sqrt(self.masses * cfg.n_beads / self.beta).view(1, -1, 1)
                p = sigma * torch.randn(shape, generator=self.generator, dtype=torch.float64)
            elif momenta == "atoms":
                p = torch.as_tensor(atoms.get_momenta(), dtype=torch.float64).expand(shape)
                p = p.clone()
            else:
                raise InputError(f"momenta must be 'thermal', 'atoms' or an array, got {momenta!r}")
        else:
            p = torch.as_tensor(np.asarray(momenta), dtype=torch.float64).clone()
            if p.shape != shape:
                raise InputError(f"momenta must have shape {shape}, got {tuple(p.shape)}")
        if not (torch.isfinite(q).all() and torch.isfinite(p).all()):
            raise InputError("initial positions and momenta must be finite")
        self.fixed = None
        if fixed_centroid is not None:
            mask = torch.as_tensor(np.asarray(fixed_centroid, dtype=bool))
            if mask.shape != (self.n_atoms, 3):
                raise InputError(f"fixed_centroid must be a ({self.n_atoms}, 3) bool mask")
            self.fixed = mask.to(torch.float64)
        self.q, self.p = q, p
        self._project()
        self.step_count = 0
        self.heat = 0.0  # kinetic energy removed by the thermostat (eV)
        self.bias = bias
        self.results = self.evaluate(self.q)
        self._apply_bias()

    # ---------------------------------------------------------------- propagation
    def _project(self) -> None:
        """Remove the centroid momentum of the fixed centroid coordinates."""
        if self.fixed is not None:
            self.p = self.p - self.p.mean(0, keepdim=True) * self.fixed

    def _apply_bias(self) -> None:
        """Total bead forces: the potential's plus the centroid bias force on every bead."""
        if self.bias is None:
            self.bias_energy = 0.0
            self.total_forces = self.results["forces"]
            return
        self.bias_energy, force = self.bias(self.centroid)
        self.total_forces = self.results["forces"] + force.to(torch.float64).unsqueeze(0)

    def _thermostat(self) -> None:
        if self.thermostat.kind == "none":
            return
        pm = to_modes(self.p, self.c)
        self.heat += self.thermostat(pm, self.generator)
        self.p = to_beads(pm, self.c)
        self._project()

    def step(self, n: int = 1) -> None:
        """Advance ``n`` OBABO steps."""
        a, b, c, d = self.free
        half = 0.5 * self.dt
        for _ in range(n):
            self._thermostat()
            self.p = self.p + half * self.total_forces
            self._project()
            pm, qm = to_modes(self.p, self.c), to_modes(self.q, self.c)
            pm, qm = a * pm + b * qm, c * pm + d * qm
            self.p, self.q = to_beads(pm, self.c), to_beads(qm, self.c)
            self.results = self.evaluate(self.q)
            if not torch.isfinite(self.results["forces"]).all():
                raise InputError(
                    f"non-finite forces at step {self.step_count + 1}: the potential left its "
                    "domain (smaller timestep, or a potential trained on these geometries)"
                )
            self._apply_bias()
            self.p = self.p + half * self.total_forces
            self._project()
            self._thermostat()
            self.step_count += 1

    def reset_atoms(self, atoms: torch.Tensor | np.ndarray, positions: torch.Tensor) -> None:
        """Put the beads of ``atoms`` back at ``positions`` (P, N, 3 — only those atoms'
        rows are used) with fresh thermal momenta, and re-evaluate the forces: a copy of a
        molecule that left the potential's domain restarts from a good configuration."""
        idx = torch.as_tensor(np.asarray(atoms), dtype=torch.long)
        self.q[:, idx] = positions[:, idx].to(torch.float64)
        sigma = torch.sqrt(self.masses[idx] * self.n_beads / self.beta).view(1, -1, 1)
        shape = (self.n_beads, len(idx), 3)
        self.p[:, idx] = sigma * torch.randn(shape, generator=self.generator, dtype=torch.float64)
        self._project()
        self.results = self.evaluate(self.q)
        self._apply_bias()

    # ---------------------------------------------------------------- estimators
    @property
    def centroid(self) -> torch.Tensor:
        """(N, 3) centroid positions."""
        return self.q.mean(0)

    def centroid_force(self) -> torch.Tensor:
        """(N, 3) mean force on the centroids, (1/P) Σ_j f_j (eV/Å)."""
        return self.results["forces"].mean(0)

    def kinetic_per_atom(self, estimator: str = "primitive") -> torch.Tensor:
        """(N,) quantum kinetic energy of each atom (eV): ``primitive``
        3P/2β − (1/P) Σ_j ½ m ω_P² |q_j − q_{j+1}|², or centroid ``virial``
        3/2β − (1/2P) Σ_j (q_j − q̄)·f_j. Their averages are −m ∂F/∂m for that atom's
        mass (isotope thermodynamic integration)."""
        if estimator == "primitive":
            dq = self.q - torch.roll(self.q, -1, dims=0)
            spring = 0.5 * self.omega_p**2 * self.masses * (dq**2).sum(-1).sum(0)
            return 3 * self.n_beads / (2 * self.beta) - spring / self.n_beads
        if estimator == "virial":
            dev = self.q - self.centroid
            virial = (dev * self.results["forces"]).sum(-1).sum(0)
            return 3 / (2 * self.beta) - virial / (2 * self.n_beads)
        raise InputError(f"estimator must be 'primitive' or 'virial', got {estimator!r}")

    def spring_energy(self) -> float:
        """Σ_j Σ_i ½ m_i ω_P² |q_i^j − q_i^{j+1}|² (eV), the ring's harmonic springs."""
        dq = self.q - torch.roll(self.q, -1, dims=0)
        m = self.masses.view(1, -1, 1)
        return float(0.5 * self.omega_p**2 * (m * dq**2).sum())

    def estimators(self) -> dict[str, Any]:
        """Thermodynamic estimators of the current configuration (eV; per system)."""
        p_, n = self.n_beads, self.n_atoms
        v_beads = self.results["energy"]
        potential = float(v_beads.mean())
        spring = self.spring_energy()
        k_prim = 3 * n * p_ / (2 * self.beta) - spring / p_
        dev = self.q - self.centroid
        k_cv = 3 * n / (2 * self.beta) - float((dev * self.results["forces"]).sum()) / (2 * p_)
        m = self.masses.view(1, -1, 1)
        kinetic_beads = float((self.p**2 / (2 * m)).sum())
        hamiltonian = kinetic_beads + spring + float(v_beads.sum()) + p_ * self.bias_energy
        out = {
            "potential": potential,
            "kinetic_primitive": k_prim,
            "kinetic_virial": k_cv,
            "energy_primitive": k_prim + potential,
            "energy_virial": k_cv + potential,
            "spring_energy": spring / p_,
            "hamiltonian": hamiltonian,
            "conserved": hamiltonian + self.heat,
            "bead_temperature": 2 * kinetic_beads / (3 * n * p_ * units.kB),
            "radius_of_gyration": torch.sqrt((dev**2).sum(-1).mean(0)).numpy(),
        }
        if "force_spread" in self.results:
            out["max_force_spread"] = float(self.results["force_spread"].max())
        return out

    # ---------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (see :meth:`load_state`)."""
        return {
            "q": self.q.numpy().copy(),
            "p": self.p.numpy().copy(),
            "step": self.step_count,
            "heat": self.heat,
            "rng": self.generator.get_state().numpy().copy(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state`."""
        self.q = torch.as_tensor(np.asarray(state["q"]), dtype=torch.float64).clone()
        self.p = torch.as_tensor(np.asarray(state["p"]), dtype=torch.float64).clone()
        self.step_count = int(state["step"])
        self.heat = float(state["heat"])
        self.generator.set_state(torch.as_tensor(np.asarray(state["rng"], dtype=np.uint8)))
        self.results = self.evaluate(self.q)
        self._apply_bias()


def settings_of(ring: RingPolymer) -> dict[str, Any]:
    """The run's settings as stored in results (config + system)."""
    return {
        **ring.config.model_dump(),
        "n_atoms": ring.n_atoms,
        "masses_amu": [float(m) for m in ring.masses],
        "numbers": [int(z) for z in ring.atoms.numbers],
    }


ProgressFn = Callable[[dict[str, Any]], None]


def run_pimd(
    ring: RingPolymer,
    steps: int,
    sample_every: int = 1,
    positions_every: int = 0,
    out: str | None = None,
    checkpoint_every: int = 1000,
    progress: ProgressFn | None = None,
    show_progress: bool = True,
) -> Any:
    """Run ``steps`` steps, sampling every ``sample_every``; returns an xarray Dataset.

    Dims: ``frame``, ``bead``, ``atom``, ``xyz``. Bead positions are stored every
    ``positions_every`` samples (0: never). With ``out`` the result is written there
    (netCDF) and every ``checkpoint_every`` steps the state and the samples so far go to
    ``out.partial.nc`` atomically; calling again with the same settings resumes from it.
    """
    from pathlib import Path

    import xarray as xr
    from tqdm.auto import tqdm

    if steps < 1 or sample_every < 1 or positions_every < 0 or checkpoint_every < 1:
        raise InputError("need steps ≥ 1, sample_every ≥ 1, positions_every ≥ 0")
    settings = {**settings_of(ring), "steps": steps, "sample_every": sample_every}
    samples: dict[str, list[Any]] = {}
    pos_frames: list[np.ndarray] = []
    pos_index: list[int] = []
    partial = Path(str(out) + ".partial.nc") if out is not None else None
    start_step = ring.step_count
    if partial is not None and partial.exists():
        with xr.open_dataset(partial, engine="h5netcdf") as ck:
            ck = ck.load()
        if json.loads(ck.attrs["settings"]) != settings:
            raise InputError(f"{partial} belongs to a run with other settings: delete it")
        ring.load_state(
            {
                "q": ck["state_q"].values,
                "p": ck["state_p"].values,
                "step": ck.attrs["state_step"],
                "heat": ck.attrs["state_heat"],
                "rng": ck["state_rng"].values,
            }
        )
        start_step = int(ck.attrs["start_step"])
        for name in [*ck.data_vars, *ck.coords]:
            if ck[name].dims and ck[name].dims[0] == "frame":
                samples[name] = list(ck[name].values)
        if "bead_positions" in ck:
            pos_frames = list(ck["bead_positions"].values)
            pos_index = list(ck["position_frame"].values)
        samples.pop("bead_positions", None)

    def dataset(final: bool) -> xr.Dataset:
        data: dict[str, Any] = {}
        for name, vals in samples.items():
            arr = np.asarray(vals)
            dims = ("frame", "atom") if arr.ndim == 2 else ("frame",)
            data[name] = (dims, arr)
        ds = xr.Dataset(data)
        if "time" in ds:
            ds = ds.set_coords("time")
        if pos_frames:
            ds["bead_positions"] = (
                ("position_frame", "bead", "atom", "xyz"),
                np.asarray(pos_frames, dtype=np.float32),
                {"units": "Å"},
            )
            ds = ds.assign_coords(position_frame=np.asarray(pos_index, dtype=np.int64))
        for name in ds.data_vars:
            if name in _UNITS:
                ds[name].attrs["units"] = _UNITS[name]
        ds["masses"] = ("atom", ring.masses.numpy(), {"units": "amu"})
        ds["numbers"] = ("atom", ring.atoms.numbers.astype(np.int64))
        ds.attrs.update(
            settings=json.dumps(settings),
            description="ring-polymer MD (nnp_lab.dynamics.pimd)",
            start_step=start_step,
        )
        if not final:
            st = ring.state()
            ds["state_q"] = (("bead", "atom", "xyz"), st["q"])
            ds["state_p"] = (("bead", "atom", "xyz"), st["p"])
            ds["state_rng"] = ("rng_byte", st["rng"])
            ds.attrs.update(state_step=st["step"], state_heat=st["heat"])
        return ds

    def record() -> None:
        est = ring.estimators()
        est["time"] = (ring.step_count - start_step) * ring.config.timestep_fs
        for name, val in est.items():
            samples.setdefault(name, []).append(val)
        n_frame = len(samples["time"]) - 1
        if positions_every and n_frame % positions_every == 0:
            pos_frames.append(ring.q.numpy().astype(np.float32))
            pos_index.append(n_frame)

    end = start_step + steps
    bar = tqdm(
        total=steps,
        initial=ring.step_count - start_step,
        desc=f"PIMD (P={ring.n_beads}, {ring.n_atoms} atoms)",
        disable=not show_progress,
        unit="step",
    )
    if ring.step_count == start_step and not samples:
        record()
    t0 = time.perf_counter()
    while ring.step_count < end:
        ring.step()
        bar.update(1)
        done = ring.step_count - start_step
        if done % sample_every == 0:
            record()
        if partial is not None and (done % checkpoint_every == 0) and ring.step_count < end:
            atomic_write(
                partial, lambda tmp: dataset(final=False).to_netcdf(tmp, engine="h5netcdf")
            )
        if progress is not None and (done % checkpoint_every == 0 or ring.step_count == end):
            progress(
                {
                    "stage": "pimd",
                    "step": done,
                    "steps": steps,
                    "elapsed_s": time.perf_counter() - t0,
                }
            )
    bar.close()
    ds = dataset(final=True)
    ds.attrs["wall_s_last_leg"] = time.perf_counter() - t0
    if out is not None:
        atomic_write(out, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
        if partial is not None:
            partial.unlink(missing_ok=True)
    return ds


_UNITS = {
    "potential": "eV",
    "kinetic_primitive": "eV",
    "kinetic_virial": "eV",
    "energy_primitive": "eV",
    "energy_virial": "eV",
    "spring_energy": "eV",
    "hamiltonian": "eV",
    "conserved": "eV",
    "bead_temperature": "K",
    "radius_of_gyration": "Å",
    "max_force_spread": "eV/Å",
    "time": "fs",
}
