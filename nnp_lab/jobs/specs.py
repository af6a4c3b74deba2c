"""Job specs: what a job does, validated with pydantic (the server validates with these too).

Every spec names a ``kind``; paths are relative to the root the job runs in (the Jupyter
server root) and may not leave it. ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nnp_lab.active.loop import ActiveLearningConfig
from nnp_lab.active.members import CommitteeConfig
from nnp_lab.apps.crystal_growth.growth import GrowthConfig
from nnp_lab.data.build import DatasetBuildConfig
from nnp_lab.dynamics.pimd.run_config import PIMDRunConfig
from nnp_lab.training.config import TrainConfig
from nnp_lab.training.run import ModelSection, SplitConfig, TrainRunConfig

DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="label shown in job lists")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE.match(v):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {v!r}")
        return v

    def paths(self) -> list[str]:
        """Relative paths this job reads or writes (checked against the root)."""
        return []


class DatasetBuildJob(_Job):
    """Build and label a dataset from a recipe (``nnp-lab dataset build``)."""

    kind: Literal["dataset_build"]
    recipe: DatasetBuildConfig | str = Field(description="recipe, or a YAML/JSON file with one")
    output: str | None = Field(None, description="netCDF to write (default: the recipe's)")

    def paths(self) -> list[str]:
        out = [self.output] if self.output else []
        return out + ([self.recipe] if isinstance(self.recipe, str) else [])


class TrainJob(_Job):
    """Train one potential on a dataset (``nnp-lab train``)."""

    kind: Literal["train"]
    dataset: str = Field(description="netCDF, ANI HDF5 or any ase-readable file")
    out: str = Field(description="output folder (model.pt, checkpoint, metrics)")
    config: TrainRunConfig = Field(default_factory=TrainRunConfig)

    def paths(self) -> list[str]:
        return [self.dataset, self.out]


class CommitteeTrainJob(_Job):
    """Train a committee (seeds + bootstrap) and calibrate its spread."""

    kind: Literal["committee_train"]
    dataset: str
    out: str
    model: ModelSection = Field(default_factory=ModelSection)
    committee: CommitteeConfig = Field(default_factory=CommitteeConfig)
    training: TrainConfig = Field(default_factory=TrainConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)

    def paths(self) -> list[str]:
        return [self.dataset, self.out]


class ActiveLearnJob(_Job):
    """Committee active learning (``nnp-lab active-learn``); resumes from its workdir."""

    kind: Literal["active_learn"]
    config: ActiveLearningConfig | str = Field(description="config, or a YAML/JSON file")

    def paths(self) -> list[str]:
        if isinstance(self.config, str):
            return [self.config]
        return [self.config.workdir]


class CrystalGrowthJob(_Job):
    """Kinetic Monte Carlo growth with NNP-predicted barriers (``nnp-lab grow``)."""

    kind: Literal["crystal_growth"]
    config: GrowthConfig | str = Field(description="growth config, or a YAML/JSON file")
    out: str = Field(description="output folder (growth.nc, growth.traj)")

    def paths(self) -> list[str]:
        return [self.out] + ([self.config] if isinstance(self.config, str) else [])


class PIMDJob(_Job):
    """Path-integral (ring-polymer) MD with an nnp-lab potential; resumes from its checkpoint."""

    kind: Literal["pimd"]
    config: PIMDRunConfig | str = Field(description="PIMD run config, or a YAML/JSON file")
    out: str = Field(description="output folder (pimd.nc)")

    def paths(self) -> list[str]:
        if isinstance(self.config, str):
            return [self.out, self.config]
        return [self.out, *self.config.paths()]


JobSpec = Annotated[
    DatasetBuildJob | TrainJob | CommitteeTrainJob | ActiveLearnJob | CrystalGrowthJob | PIMDJob,
    Field(discriminator="kind"),
]
KINDS = ("dataset_build", "train", "committee_train", "active_learn", "crystal_growth", "pimd")


class JobRequest(BaseModel):
    """Body of a job submission: ``{"spec": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    spec: JobSpec


def parse_spec(data: dict[str, Any]) -> Any:
    """Validate a spec dict (raises :class:`~nnp_lab.errors.ConfigError` naming the field)."""
    from nnp_lab.config_io import validate

    return validate(JobRequest, {"spec": data}, source="job spec").spec
