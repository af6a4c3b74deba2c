"""Committee training: K members from different seeds and bootstrap resamples.

Each member gets its own initial weights (seed ``seed·7919 + k``), its own bootstrap
resample of the training set (drawn with replacement from ``(seed, k)``), and its own
data order. Members are trained one after the other in this process, each using every
core through torch's intra-op threads (or the GPU). Every member checkpoints into its own
folder, so a killed committee training resumes member by member with no epoch lost.

Warm start (retraining after new labels): each member continues from the previous
committee's member k — weights and statistics (self-energies, descriptor standardisation)
kept, so the retrained committee starts where the old one was.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee
from nnp_lab.models.potential import ModelConfig, Potential
from nnp_lab.training.config import TrainConfig
from nnp_lab.training.trainer import Trainer


class CommitteeConfig(BaseModel):
    """How a committee is formed."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(4, ge=2, le=32, description="number of members K")
    bootstrap: bool = Field(True, description="each member trains on a bootstrap resample")
    seed: int = 0


def bootstrap_indices(n: int, member: int, seed: int) -> np.ndarray:
    """Sorted indices of a bootstrap resample (n draws with replacement) for one member."""
    rng = np.random.default_rng([int(seed), int(member)])
    return np.sort(rng.integers(0, n, size=n))


def train_committee(
    train: Dataset,
    val: Dataset | None,
    model: ModelConfig,
    committee: CommitteeConfig | None = None,
    training: TrainConfig | dict | None = None,
    workdir: str | os.PathLike | None = None,
    warm_start: Committee | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
) -> tuple[Committee, list[xr.Dataset]]:
    """Train a committee; returns it and each member's metrics history.

    Args:
        train, val: labelled datasets (val is shared by all members).
        model: the members' architecture.
        committee: size, bootstrap and seed.
        training: hyperparameters; member k uses ``seed + k`` for its data order.
        workdir: checkpoints go to ``workdir/member_<k>/`` (resumed if present).
        warm_start: continue from this committee's members (same size and config).
        progress: called with ``{"member": k, "members": K, **epoch record}``.
    """
    ccfg = committee or CommitteeConfig()
    tcfg = training if isinstance(training, TrainConfig) else TrainConfig(**(training or {}))
    train = train.labelled()
    if len(train) == 0:
        raise InputError("the committee's training set has no labelled structures")
    if warm_start is not None:
        if warm_start.size != ccfg.size:
            raise InputError(
                f"warm start from a committee of {warm_start.size} members, but "
                f"{ccfg.size} were asked for"
            )
        if warm_start.config != model:
            raise InputError("warm start from a committee with a different model config")
    members: list[Potential] = []
    histories: list[xr.Dataset] = []
    for k in range(ccfg.size):
        if warm_start is not None:
            pot = copy.deepcopy(warm_start.members[k])
        else:
            torch.manual_seed(ccfg.seed * 7919 + k)
            pot = Potential(config=model)
        data_k = (
            train.subset(bootstrap_indices(len(train), k, ccfg.seed)) if ccfg.bootstrap else train
        )
        member_dir = None if workdir is None else Path(workdir) / f"member_{k}"

        def report(record: dict[str, Any], k: int = k) -> None:
            if progress is not None:
                progress({"member": k, "members": ccfg.size, **record})

        trainer = Trainer(
            pot, data_k, val, tcfg.model_copy(update={"seed": tcfg.seed + k}), workdir=member_dir
        )
        histories.append(trainer.fit(resume=True, progress=report, show_progress=show_progress))
        members.append(pot)
    return Committee(members), histories
