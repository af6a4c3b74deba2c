"""Save and load potentials: one file holding a JSON config and a weights state dict.

The file is written atomically with ``torch.save`` and read with ``weights_only=True``
(no pickle of arbitrary objects), so loading an untrusted model file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from nnp_lab._atomic import atomic_write
from nnp_lab.errors import CheckpointError, SpeciesError
from nnp_lab.models.potential import ModelConfig, Potential

FORMAT = "nnp-lab-potential"
FORMAT_VERSION = 1


def model_hash(potential: Potential) -> str:
    """SHA-256 of the config and all weights/buffers (provenance of results)."""
    h = hashlib.sha256(potential.config.model_dump_json().encode())
    for name, t in sorted(potential.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_potential(
    potential: Potential, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``potential`` to ``path`` (config JSON + state dict + metadata JSON)."""
    from nnp_lab import __version__

    meta = {**potential.metadata, **(metadata or {})}
    meta.setdefault("nnp_lab_version", __version__)
    meta["model_hash"] = model_hash(potential)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": potential.config.model_dump_json(),
        "metadata": json.dumps(meta),
        "dtype": str(potential.dtype).replace("torch.", ""),
        "state_dict": {k: v.detach().cpu() for k, v in potential.state_dict().items()},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_tagged(path: str | os.PathLike, fmt: str, what: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a file whose ``"format"`` entry must be ``fmt``.

    Any failure becomes a :class:`CheckpointError` naming the file and ``what`` it should be.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable {what} ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"{path} is not an {what} (format tag {fmt!r} missing)")
    return payload


def _read(path: str | os.PathLike) -> dict[str, Any]:
    payload = read_tagged(path, FORMAT, "nnp-lab model file")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer nnp-lab (format {payload['format_version']}); upgrade"
        )
    return payload


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Potential:
    """Load a potential written by :meth:`Potential.save` (on ``device``, saved dtype)."""
    payload = _read(path)
    try:
        config = ModelConfig.model_validate_json(payload["config"])
    except Exception as exc:
        raise CheckpointError(f"{path}: invalid model config ({exc})") from None
    pot = Potential(config=config)
    dtype = getattr(torch, payload.get("dtype", "float32"))
    pot.to(dtype)
    _load_state(pot, payload["state_dict"], path)
    pot.metadata = json.loads(payload.get("metadata", "{}"))
    return pot.to(device)


def load_weights_into(potential: Potential, path: str | os.PathLike) -> None:
    """Load the weights of ``path`` into an existing ``potential`` of the same architecture."""
    payload = _read(path)
    saved = ModelConfig.model_validate_json(payload["config"])
    if saved.species != potential.species:
        raise SpeciesError(
            f"{path} holds a model for species {saved.species} but this potential has "
            f"{potential.species}"
        )
    if saved != potential.config:
        raise CheckpointError(
            f"{path} holds a model with a different architecture/descriptor than this potential; "
            "use nnp_lab.load(path) to rebuild it from the saved config"
        )
    _load_state(potential, payload["state_dict"], path)


def _load_state(pot: Potential, state: dict[str, torch.Tensor], path: Any) -> None:
    try:
        pot.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model ({str(exc)[:300]})") from None
