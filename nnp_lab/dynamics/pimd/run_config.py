"""A PIMD run described by a config (YAML/JSON or a dict): what the ``pimd`` lab job runs.

structure: water.xyz          # any ase-readable file (relative to the job root)
model: water_committee.pt     # nnp-lab potential or committee file
pimd: {n_beads: 16, temperature_K: 300, thermostat: pile_l, timestep_fs: 0.25}
steps: 20000
sample_every: 10
positions_every: 10           # samples between stored bead positions (0: never)
deuterium: [1, 2]             # H → D by atom index
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nnp_lab.dynamics.pimd.rpmd import PIMDConfig, RingPolymer, run_pimd, with_isotope
from nnp_lab.errors import InputError


class PIMDRunConfig(BaseModel):
    """Everything a PIMD run needs; paths are relative to the root it runs in."""

    model_config = ConfigDict(extra="forbid")

    structure: str = Field(description="ase-readable structure file")
    model: str = Field(description="nnp-lab potential or committee file")
    pimd: PIMDConfig
    steps: int = Field(ge=1)
    sample_every: int = Field(10, ge=1)
    positions_every: int = Field(10, ge=0)
    checkpoint_every: int = Field(1000, ge=1)
    deuterium: list[int] = Field(default_factory=list, description="H → D by atom index")

    def paths(self) -> list[str]:
        return [self.structure, self.model]


def run_from_config(
    config: PIMDRunConfig,
    root: str | Path,
    out: str | Path,
    progress: Callable[[dict[str, Any]], None] | None = None,
    device: str = "auto",
) -> Any:
    """Run ``config`` (paths under ``root``) with the model on ``device``, writing ``out``
    (netCDF; a killed run resumes from ``out.partial.nc``)."""
    from ase.io import read

    from nnp_lab.dynamics.calculator import load_model
    from nnp_lab.training.config import resolve_device

    root = Path(root)
    atoms = read(root / config.structure)
    for i in config.deuterium:
        if 0 <= i < len(atoms) and atoms.numbers[i] != 1:
            raise InputError(f"deuterium index {i} is {atoms.get_chemical_symbols()[i]}, not H")
    if config.deuterium:
        atoms = with_isotope(atoms, config.deuterium)
    model = load_model(str(root / config.model), device=str(resolve_device(device)))
    ring = RingPolymer(atoms, model, config.pimd)
    return run_pimd(
        ring,
        config.steps,
        sample_every=config.sample_every,
        positions_every=config.positions_every,
        out=out,
        checkpoint_every=config.checkpoint_every,
        progress=progress,
        show_progress=False,
    )
