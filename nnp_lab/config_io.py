"""Read YAML/JSON configuration files into pydantic models with messages that name the field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from nnp_lab.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line per problem: ``field.path: message`` (with the offending value)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (misspelt?)"
        lines.append(f"  {loc}: {msg}")
    return f"invalid {source}:\n" + "\n".join(lines)


def read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a YAML or JSON file into a dict."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of fields, got {type(data).__name__}")
    return data


def validate(model: type[M], data: dict[str, Any] | M, source: str = "config") -> M:
    """Validate ``data`` as ``model``; raise :class:`ConfigError` naming each bad field."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(model: type[M], path: str | os.PathLike) -> M:
    """Read and validate a YAML/JSON config file."""
    return validate(model, read_mapping(path), source=str(path))
