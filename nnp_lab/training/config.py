"""Training hyperparameters (validated; a misspelt field is an error naming it)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Hyperparameters of :class:`nnp_lab.Trainer`.

    Loss = ``energy_weight`` · MSE(energy per atom) + ``force_weight`` · MSE(force
    components), in eV² per atom² and (eV/Å)²; structures without reference forces
    contribute to the energy term only.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(16, ge=1, description="structures per optimisation step")
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    energy_weight: float = Field(1.0, ge=0)
    force_weight: float = Field(0.1, ge=0)
    lr_factor: float = Field(0.5, gt=0, lt=1)
    lr_patience: int = Field(
        10, ge=0, description="epochs without validation improvement before the LR is reduced"
    )
    min_lr: float = Field(1e-6, ge=0)
    early_stopping_patience: int = Field(
        40, ge=1, description="epochs without improvement before stopping"
    )
    checkpoint_every: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(10.0, gt=0)
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    restore_best: bool = True

    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "float32" else torch.float64

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else as given (validated)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'"
        )
    return dev
