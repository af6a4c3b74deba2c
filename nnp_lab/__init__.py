"""nnp-lab: neural-network interatomic potentials, from reference data to a usable potential.

Public entry points (imported lazily so ``import nnp_lab`` stays cheap)::

    from nnp_lab import Dataset, Potential, Trainer, NNPCalculator, load
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("nnp-lab")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

_EXPORTS = {
    "Dataset": "nnp_lab.data.dataset",
    "Potential": "nnp_lab.models.potential",
    "Trainer": "nnp_lab.training.trainer",
    "TrainConfig": "nnp_lab.training.config",
    "NNPCalculator": "nnp_lab.dynamics.calculator",
    "load": "nnp_lab.models.serialization",
    "evaluate": "nnp_lab.training.evaluation",
}

__all__ = ["__version__", *_EXPORTS]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter server extension entry point (the REST API in :mod:`nnp_lab.server`)."""
    return [{"module": "nnp_lab.server"}]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nnp_lab' has no attribute {name!r}")
