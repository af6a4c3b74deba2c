"""ANI-style atom-centred symmetry functions as a torch module, with presets."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nnp_lab.kernels.backend import compute_aev
from nnp_lab.kernels.params import AEVParams


def linear_shifts(start: float, stop: float, count: int) -> list[float]:
    """``count`` equally spaced values from ``start`` up to (excluding) ``stop``.

    This is how the ANI papers place radial shifts and angular sections.
    """
    step = (stop - start) / count
    return [start + step * k for k in range(count)]


class DescriptorConfig(BaseModel):
    """Hyperparameters of the ANI atomic environment vector (lengths Å, angles rad)."""

    model_config = ConfigDict(extra="forbid")

    radial_cutoff: float = Field(5.2, gt=0)
    radial_eta: float = Field(16.0, gt=0)
    radial_shifts: list[float] = Field(default_factory=lambda: linear_shifts(0.9, 5.2, 16))
    angular_cutoff: float = Field(3.5, gt=0)
    angular_eta: float = Field(8.0, gt=0)
    zeta: float = Field(32.0, gt=0)
    angular_shifts: list[float] = Field(default_factory=lambda: linear_shifts(0.9, 3.5, 4))
    sections: list[float] = Field(
        default_factory=lambda: linear_shifts(math.pi / 16, math.pi + math.pi / 16, 8)
    )
    cutoff_fn: Literal["cosine"] = "cosine"

    @model_validator(mode="after")
    def _check(self) -> DescriptorConfig:
        if self.angular_cutoff > self.radial_cutoff:
            raise ValueError(
                f"angular_cutoff ({self.angular_cutoff}) must not exceed radial_cutoff "
                f"({self.radial_cutoff})"
            )
        for name in ("radial_shifts", "angular_shifts", "sections"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        return self

    @classmethod
    def preset(cls, name: str, **overrides: float) -> DescriptorConfig:
        """Named hyperparameter sets: ``"ani1x"``, ``"ani2x"``, ``"metal"``.

        ``ani1x``/``ani2x`` are the published ANI-1x and ANI-2x values (Smith et al. 2018,
        Devereux et al. 2020). ``metal`` widens the cutoffs (6.0/4.0 Å) for close-packed
        metals, whose second/third neighbour shells matter (EMT's own cutoff is ≈ 5 Å).
        """
        name = name.lower()
        if name == "ani1x":
            cfg = cls()
        elif name == "ani2x":
            cfg = cls(
                radial_cutoff=5.1,
                radial_eta=19.7,
                radial_shifts=linear_shifts(0.8, 5.1, 16),
                angular_cutoff=3.5,
                angular_eta=12.5,
                zeta=14.1,
                angular_shifts=linear_shifts(0.8, 3.5, 8),
                sections=linear_shifts(math.pi / 8, math.pi + math.pi / 8, 4),
            )
        elif name == "metal":
            cfg = cls(
                radial_cutoff=6.0,
                radial_eta=8.0,
                radial_shifts=linear_shifts(1.6, 6.0, 16),
                angular_cutoff=4.0,
                angular_eta=6.0,
                zeta=8.0,
                angular_shifts=linear_shifts(1.8, 4.0, 4),
                sections=linear_shifts(math.pi / 12, math.pi + math.pi / 12, 6),
            )
        else:
            raise ValueError(f"unknown descriptor preset {name!r}; use 'ani1x', 'ani2x' or 'metal'")
        return cfg.model_copy(update=overrides) if overrides else cfg

    def params(self, num_species: int) -> AEVParams:
        """The kernel-level parameter bundle for ``num_species`` species."""
        return AEVParams(
            num_species=num_species,
            radial_cutoff=self.radial_cutoff,
            radial_eta=self.radial_eta,
            radial_shifts=tuple(self.radial_shifts),
            angular_cutoff=self.angular_cutoff,
            angular_eta=self.angular_eta,
            zeta=self.zeta,
            angular_shifts=tuple(self.angular_shifts),
            sections=tuple(self.sections),
        )

    def num_features(self, num_species: int) -> int:
        """Length of the descriptor vector for ``num_species`` species."""
        pairs = num_species * (num_species + 1) // 2
        return num_species * len(self.radial_shifts) + pairs * len(self.angular_shifts) * len(
            self.sections
        )


class ANIDescriptor(torch.nn.Module):
    """Species-resolved radial + angular symmetry functions (no trainable parameters).

    ``backend`` selects the kernel (``auto``, ``torch``, ``cpu``, ``triton``; see
    :mod:`nnp_lab.kernels.backend`); it is a run-time choice, not part of the model.
    """

    def __init__(self, config: DescriptorConfig, num_species: int, backend: str = "auto"):
        super().__init__()
        self.config = config
        self.num_species = int(num_species)
        self.params = config.params(self.num_species)
        self.backend = backend

    @property
    def cutoff(self) -> float:
        return self.config.radial_cutoff

    @property
    def num_features(self) -> int:
        return self.params.num_features

    def forward(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        """Descriptors (N, F) from species indices and the full pair list's vectors."""
        return compute_aev(species, vectors, i, j, self.params, backend=self.backend)
