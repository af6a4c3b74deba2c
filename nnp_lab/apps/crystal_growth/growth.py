"""Growth runs from a config: barrier source → KMC → results (netCDF) and trajectories.

    config = GrowthConfig(metal="Cu", facet="100", temperature=300, flux=1000, coverage=0.5)
    result = run_growth(config)                 # xarray.Dataset over snapshots
    frames = growth_frames(result)              # list[ase.Atoms], one per snapshot

``barriers="model"`` trains the committee barrier model on the shipped NEB data of the
metal/facet (or ``barrier_data``) and, with ``active: true``, sends uncertain new
environments to EMT NEB during growth; ``barriers="bond_counting"`` uses the classic
bond-counting model with the ``bond_counting`` parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field

from nnp_lab.apps.crystal_growth.lattice import Surface
from nnp_lab.errors import InputError


class BondCountingParams(BaseModel):
    """Parameters of :class:`~.bond_counting.BondCountingBarriers` (eV)."""

    model_config = ConfigDict(extra="forbid")
    e_d: float = 0.4
    e_n: float = 0.3
    e_es: float = 0.0
    e_x: float = float("inf")
    irreversible: bool = False


class GrowthConfig(BaseModel):
    """One KMC growth run (units: K, ML/s, s⁻¹, eV)."""

    model_config = ConfigDict(extra="forbid")
    metal: str = "Cu"
    facet: Literal["100", "111"] = "100"
    size: int = Field(100, ge=8)
    layers: int = Field(12, ge=4)
    temperature: float = Field(300.0, gt=0)
    flux: float = Field(1.0, gt=0)
    coverage: float = Field(1.0, gt=0)
    snapshots: int = Field(20, ge=1)
    prefactor: float = Field(1e12, gt=0)
    seed: int = 0
    barriers: Literal["model", "bond_counting"] = "model"
    barrier_data: str | None = None
    members: int = Field(5, ge=2)
    active: bool = False
    threshold: float = Field(0.05, gt=0)
    max_reference: int = Field(50, ge=0)
    bond_counting: BondCountingParams = BondCountingParams()


def barrier_source(config: GrowthConfig, surface: Surface) -> Any:
    """The barrier source a config asks for."""
    if config.barriers == "bond_counting":
        from nnp_lab.apps.crystal_growth.bond_counting import BondCountingBarriers

        return BondCountingBarriers(**config.bond_counting.model_dump())
    from nnp_lab.apps.crystal_growth.active_barriers import ActiveBarriers
    from nnp_lab.apps.crystal_growth.barrier_data import load_barriers
    from nnp_lab.apps.crystal_growth.barrier_model import BarrierModel

    data = load_barriers(surface.metal, surface.facet, config.barrier_data)
    data = data.where(data.status == "ok", drop=True)
    keys = data.key.values.astype(np.int64)
    model = BarrierModel(surface, members=config.members, seed=config.seed).fit(
        keys, data.barrier.values, data.delta_e.values
    )
    if not config.active:
        return model
    return ActiveBarriers(
        model,
        list(keys),
        list(data.barrier.values),
        list(data.delta_e.values),
        threshold=config.threshold,
        max_reference=config.max_reference,
    )


def run_growth(config: GrowthConfig, progress: Any = None) -> xr.Dataset:
    """Run the growth a config describes; the result carries the config in its attrs."""
    from nnp_lab.apps.crystal_growth.kmc import GrowthKMC  # numba: imported when used

    surface = Surface(config.metal, config.facet)
    kmc = GrowthKMC(
        surface,
        barrier_source(config, surface),
        size=config.size,
        layers=config.layers,
        temperature=config.temperature,
        flux=config.flux,
        prefactor=config.prefactor,
        seed=config.seed,
    )
    result = kmc.run(config.coverage, snapshots=config.snapshots, progress=progress)
    result.attrs["config"] = config.model_dump_json()
    result.attrs["barriers"] = config.barriers
    calls = getattr(kmc.source, "calls", None)
    if calls is not None:
        result.attrs["reference_calls"] = len(calls)
    return result


def growth_frames(result: xr.Dataset, min_layer: int = 0) -> list[Atoms]:
    """The snapshots of a growth result as ``ase.Atoms`` (film + top substrate layer;
    tags = layer), e.g. for ``ase.io.write("growth.traj", frames)``."""
    if "occupancy" not in result:
        raise InputError("this result has no frames: run with keep_frames=True")
    surface = Surface(
        result.attrs["metal"], result.attrs["facet"], result.attrs["lattice_constant"]
    )
    a1, a2, c = surface.vectors
    n = int(result.attrs["size"])
    frames = []
    for occ in result.occupancy.values:
        sites = np.argwhere(occ)
        sites = sites[sites[:, 0] >= min_layer]
        pos = surface.position(sites)
        cell = np.array([n * a1, n * a2, [0.0, 0.0, (occ.shape[0] + 4) * c[2]]])
        atoms = Atoms(surface.metal * len(sites), positions=pos, cell=cell, pbc=(True, True, False))
        atoms.wrap()
        atoms.set_tags(sites[:, 0])
        frames.append(atoms)
    return frames


def save_outputs(result: xr.Dataset, out: str | Path) -> tuple[Path, Path]:
    """Write ``out/growth.nc`` (the result) and ``out/growth.traj`` (its frames as an ASE
    trajectory), each atomically; returns both paths."""
    from ase.io import write

    from nnp_lab._atomic import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    nc = atomic_write(out / "growth.nc", lambda p: result.to_netcdf(p, engine="h5netcdf"))
    traj = atomic_write(
        out / "growth.traj", lambda p: write(p, growth_frames(result), format="traj")
    )
    return nc, traj
