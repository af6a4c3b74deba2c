"""Off-lattice check of the KMC: molecular-dynamics deposition with any ASE calculator.

Atoms arrive one at a time on a periodic fcc(100)/(111) slab (bottom layers fixed, the
other substrate layers coupled to a Langevin bath at T; arriving atoms move freely) at a
chosen kinetic energy and polar angle, from above the potential's reach. Between two
arrivals the film evolves for ``steps_per_atom`` MD steps. After every ``analyse_every``
arrivals the film is analysed (:mod:`.defects`): vacancies, overhangs, atoms off the
lattice (stacking faults on (111)), CNA and coordination — what the lattice model leaves
out. With a :class:`~nnp_lab.dynamics.calculator.CommitteeCalculator` the committee's
largest force spread along the run is recorded too.

    result, frames = run_deposition(DepositionConfig(atoms=100), calc)
    python -m nnp_lab.apps.crystal_growth.deposition --atoms 100 --model cu.pt --out dep
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.constraints import FixAtoms
from ase.md import velocitydistribution as vd
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from pydantic import BaseModel, ConfigDict, Field

from nnp_lab.apps.crystal_growth.defects import coordination_numbers, film_defects, shell_cutoff
from nnp_lab.apps.crystal_growth.lattice import Surface
from nnp_lab.errors import InputError

COUNTS = ("film", "off_lattice", "voids", "vacancies", "unsupported", "fcc", "hcp", "other")


class DepositionConfig(BaseModel):
    """One MD deposition run (units: Å, eV, K, fs, degrees)."""

    model_config = ConfigDict(extra="forbid")
    metal: str = "Cu"
    facet: Literal["100", "111"] = "100"
    size: int = Field(6, ge=3, description="lateral repeat of the slab")
    substrate_layers: int = Field(4, ge=3)
    fixed_layers: int = Field(2, ge=1)
    lattice_constant: float = Field(0.0, ge=0, description="0 = the metal's tabulated a")
    atoms: int = Field(36, ge=1, description="number of arriving atoms")
    energy: float = Field(0.2, ge=0, description="incident kinetic energy (eV)")
    polar_angle: float = Field(0.0, ge=0, lt=90, description="from the surface normal")
    temperature: float = Field(300.0, ge=0)
    timestep_fs: float = Field(2.0, gt=0, le=5)
    steps_per_atom: int = Field(500, ge=1)
    equilibration_steps: int = Field(200, ge=0, description="substrate in the bath first")
    friction: float = Field(0.01, ge=0, description="bath coupling (1/fs); 0 = NVE")
    release_height: float = Field(6.5, gt=0, description="above the highest bonded atom (Å)")
    analyse_every: int = Field(6, ge=1, description="arrivals between two analyses")
    seed: int = 0

    def model_post_init(self, __context: Any) -> None:
        if self.fixed_layers >= self.substrate_layers:
            raise InputError(
                f"fixed_layers ({self.fixed_layers}) must be fewer than substrate_layers "
                f"({self.substrate_layers}): at least one substrate layer must move"
            )


def substrate(config: DepositionConfig) -> tuple[Surface, Atoms]:
    """The lattice and the slab atoms arrive on (tags: substrate layers > 0)."""
    surface = Surface(config.metal, config.facet, config.lattice_constant)
    slab = surface.slab(np.zeros((0, 3)), config.size, substrate_layers=config.substrate_layers)
    top = slab.positions[:, 2].max()
    cell = slab.cell.array.copy()
    # room for the film and the release height above it, vacuum below
    cell[2, 2] = top + 3.0 * config.atoms / config.size**2 * surface.vectors[2][2] + 30.0
    slab.set_cell(cell)
    slab.pbc = (True, True, False)
    return surface, slab


def _arrival(
    config: DepositionConfig, atoms: Atoms, bonded: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity (ASE units) of the next arriving atom, released above the
    highest of the ``bonded`` atoms (an atom still in flight does not count)."""
    cell = atoms.cell.array
    u, v = rng.random(2)
    xy = u * cell[0] + v * cell[1]
    z = atoms.positions[bonded, 2].max() + config.release_height
    if z > cell[2, 2] - 5.0:
        raise InputError("the film grew out of the cell: deposit fewer atoms per run")
    mass = atoms[0].mass if len(atoms) else 1.0
    speed = np.sqrt(2.0 * config.energy / mass)
    theta, phi = np.radians(config.polar_angle), rng.uniform(0.0, 2 * np.pi)
    vel = speed * np.array(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), -np.cos(theta)]
    )
    return np.array([xy[0], xy[1], z]), vel


def _force_spread(calc: Calculator) -> float:
    return float(calc.results.get("max_force_spread", np.nan))


def run_deposition(
    config: DepositionConfig,
    calc: Calculator,
    progress: Callable[[int, int], None] | None = None,
    on_step: Callable[[Atoms, int], None] | None = None,
) -> tuple[xr.Dataset, list[Atoms]]:
    """Deposit ``config.atoms`` atoms with ``calc``; returns the analyses as an
    ``xarray.Dataset`` over ``snapshot`` and the film at every snapshot (``ase.Atoms``,
    tags 0 = deposited atoms). ``on_step(atoms, step)`` is called after every MD step."""
    rng = np.random.default_rng(config.seed)
    surface, atoms = substrate(config)
    n_sub = len(atoms)
    fixed = atoms.get_tags() > config.substrate_layers - config.fixed_layers
    atoms.set_constraint(FixAtoms(mask=fixed))
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, 2 * config.temperature, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=2 * config.temperature, rng=rng)
    atoms.set_momenta(np.where(fixed[:, None], 0.0, atoms.get_momenta()))
    atoms.calc = calc
    dt = config.timestep_fs * units.fs
    rows: list[dict[str, Any]] = []
    frames: list[Atoms] = []
    spread_max = np.nan
    t0 = time.time()

    def analyse(n_arrived: int) -> None:
        d = film_defects(atoms, surface, config.size, config.substrate_layers)
        bath = ~fixed[:n_sub]
        ekin = 0.5 * (atoms.get_masses()[:n_sub, None] * atoms.get_velocities()[:n_sub] ** 2)
        rows.append(
            {
                "arrived": n_arrived,
                "time_ps": n_arrived * config.steps_per_atom * config.timestep_fs / 1000.0,
                **{k: d[k] for k in COUNTS},
                "stuck": int((d["coordination"][n_sub:] > 0).sum()),
                "mean_coordination": float(d["coordination"][atoms.get_tags() == 0].mean())
                if n_arrived
                else np.nan,
                "substrate_temperature": float(2 * ekin[bath].sum() / (3 * bath.sum() * units.kB)),
                "energy": float(atoms.get_potential_energy()),
                "max_force_spread": spread_max,
            }
        )
        snap = atoms.copy()
        snap.calc = None
        snap.info["arrived"] = n_arrived
        frames.append(snap)

    if config.friction > 0:
        Langevin(
            atoms,
            dt,
            temperature_K=config.temperature,
            friction=config.friction / units.fs,
            fixcm=False,
            rng=rng,
        ).run(config.equilibration_steps)
    analyse(0)
    step = 0
    for n in range(1, config.atoms + 1):
        pos, vel = _arrival(config, atoms, _bonded(atoms, surface), rng)
        new = Atoms(config.metal, positions=[pos], tags=[0])
        new.set_velocities([vel])
        atoms.extend(new)
        arrived = np.zeros(len(atoms) - n_sub, bool)
        bath = np.r_[~fixed, arrived]
        atoms.set_constraint(FixAtoms(mask=np.r_[fixed, arrived]))
        dyn = (
            Langevin(
                atoms,
                dt,
                temperature_K=config.temperature,
                friction=np.where(bath, config.friction / units.fs, 0.0)[:, None],
                fixcm=False,
                rng=rng,
            )
            if config.friction > 0
            else VelocityVerlet(atoms, dt)
        )
        for _ in range(config.steps_per_atom):
            dyn.run(1)
            step += 1
            if on_step is not None:
                on_step(atoms, step)
            s = _force_spread(calc)
            if np.isfinite(s):
                spread_max = s if not np.isfinite(spread_max) else max(spread_max, s)
        if n % config.analyse_every == 0 or n == config.atoms:
            analyse(n)
        if progress is not None:
            progress(n, config.atoms)
    ds = xr.Dataset(
        {k: ("snapshot", np.array([r[k] for r in rows])) for k in rows[0]},
        coords={"snapshot": np.arange(len(rows))},
    )
    for k, u in (("time_ps", "ps"), ("energy", "eV"), ("max_force_spread", "eV/Å")):
        ds[k].attrs["units"] = u
    ds.substrate_temperature.attrs["units"] = "K"
    ds.attrs.update(
        {
            k: (str(v) if not isinstance(v, (int, float)) else v)
            for k, v in config.model_dump().items()
        }
    )
    ds.attrs.update(
        calculator=type(calc).__name__,
        wall_time_s=time.time() - t0,
        description="MD deposition, defect analysis per snapshot (nnp_lab.apps.crystal_growth)",
    )
    return ds, frames


def _bonded(atoms: Atoms, surface: Surface) -> np.ndarray:
    """Atoms within bonding range of another atom (not reflected or in flight)."""
    return coordination_numbers(atoms, shell_cutoff(surface)) > 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="MD deposition and defect analysis")
    ap.add_argument("--model", help="nnp-lab potential or committee (.pt); default: EMT")
    for name, field in DepositionConfig.model_fields.items():
        if field.annotation in (int, float):
            ap.add_argument(f"--{name.replace('_', '-')}", type=field.annotation, default=None)
        elif name in ("metal", "facet"):
            ap.add_argument(f"--{name}", default=None)
    ap.add_argument("--out", default="deposition")
    args = ap.parse_args(argv)
    given = {
        k: getattr(args, k)
        for k in DepositionConfig.model_fields
        if getattr(args, k, None) is not None
    }
    config = DepositionConfig(**given)
    calc = _calculator(args.model)
    from tqdm import tqdm

    with tqdm(total=config.atoms, desc="deposited", unit="atom") as bar:
        ds, frames = run_deposition(config, calc, progress=lambda n, t: bar.update(1))
    save_deposition(ds, frames, args.out)
    last = ds.isel(snapshot=-1)
    print({k: int(last[k]) for k in (*COUNTS, "stuck")}, f"{ds.attrs['wall_time_s']:.0f} s")


def _calculator(model: str | None) -> Calculator:
    """EMT, or the nnp-lab potential / committee in ``model``."""
    if model is None:
        from ase.calculators.emt import EMT

        return EMT()
    from nnp_lab.dynamics.calculator import calculator_for

    return calculator_for(model)


def save_deposition(ds: xr.Dataset, frames: list[Atoms], out: str | Path) -> tuple[Path, Path]:
    """``<out>.nc`` (analyses) and ``<out>.traj`` (snapshots), written atomically."""
    from ase.io import write

    from nnp_lab._atomic import atomic_write

    out = Path(out)
    nc, traj = out.with_suffix(".nc"), out.with_suffix(".traj")
    atomic_write(nc, lambda p: ds.to_netcdf(p, engine="h5netcdf"))
    atomic_write(traj, lambda p: write(str(p), frames, format="traj"))
    return nc, traj


if __name__ == "__main__":
    main()
