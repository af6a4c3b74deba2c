"""One call from a dataset to a trained, evaluated, saved potential (used by the CLI and demo)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from nnp_lab._atomic import atomic_write, atomic_write_text
from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import InputError
from nnp_lab.models.descriptor import DescriptorConfig
from nnp_lab.models.potential import ModelConfig, Potential
from nnp_lab.training.config import TrainConfig
from nnp_lab.training.evaluation import evaluate, metrics
from nnp_lab.training.trainer import Progress, Trainer


class ModelSection(BaseModel):
    """Model part of a training config; ``species`` is inferred from the data when omitted."""

    model_config = ConfigDict(extra="forbid")

    species: list[str] | None = None
    descriptor: str | DescriptorConfig = "ani1x"
    hidden: list[int] | dict[str, list[int]] = Field(default_factory=lambda: [128, 96, 64])
    activation: str = "celu"
    normalize_descriptors: bool = True

    def build(self, dataset_species: list[str]) -> ModelConfig:
        desc = self.descriptor
        if isinstance(desc, str):
            try:
                desc = DescriptorConfig.preset(desc)
            except ValueError as exc:
                raise InputError(f"model.descriptor: {exc}") from None
        return ModelConfig(
            species=self.species or dataset_species,
            descriptor=desc,
            hidden=self.hidden,
            activation=self.activation,
            normalize_descriptors=self.normalize_descriptors,
        )


class SplitConfig(BaseModel):
    """Train/validation/test fractions and the seed of the random split."""

    model_config = ConfigDict(extra="forbid")

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


class TrainRunConfig(BaseModel):
    """``nnp-lab train --config``: model, training and split sections (all optional)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainConfig = Field(default_factory=TrainConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)


def train_from_dataset(
    dataset: Dataset,
    config: TrainRunConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: Progress | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Split, build the model, train (resumable), evaluate on the test split, save.

    Writes to ``out_dir``: ``model.pt``, ``checkpoint.pt``, ``metrics.nc`` (history),
    ``test_parity.nc`` and ``train_summary.json``. Returns the summary dict.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = dataset.labelled()
    if len(data) < 3:
        raise InputError(
            f"need at least 3 labelled structures to split into train/validation/test, got {len(data)}"
        )
    train, val, test = data.split(config.split.fractions, seed=config.split.seed)
    model_config = config.model.build(data.species)
    torch.manual_seed(config.training.seed)
    potential = Potential(config=model_config)
    trainer = Trainer(potential, train, val, config.training, workdir=out)
    history = trainer.fit(resume=resume, progress=progress, show_progress=show_progress)
    summary: dict[str, Any] = {
        "epochs_trained": trainer.epoch,
        "stopped_early": trainer.stopped_early,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "species": potential.species,
    }
    if len(test):
        parity = evaluate(potential, test)
        atomic_write(out / "test_parity.nc", lambda tmp: parity.to_netcdf(tmp, engine="h5netcdf"))
        summary["test"] = metrics(parity)
        potential.metadata["test_metrics"] = summary["test"]
    potential.save(out / "model.pt")
    summary["model"] = str(out / "model.pt")
    summary["final_val"] = {
        k: float(history[k].values[-1]) for k in history.data_vars if k.startswith("val_")
    }
    atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=2))
    return summary
