"""Exceptions a user can cause, each naming what to fix.

Every error raised for bad input derives from :class:`NNPLabError` so the CLI
(and later the job server) can print the message instead of a traceback.
"""

from __future__ import annotations


class NNPLabError(Exception):
    """Base class of all nnp-lab errors."""


class InputError(NNPLabError, ValueError):
    """Invalid structures or arguments (NaN positions, atoms too close, bad cell...)."""


class SpeciesError(InputError):
    """An element is not known to the model, or a checkpoint is for other species."""


class FileFormatError(InputError):
    """A file cannot be read as the format it was asked to be."""


class ConfigError(InputError):
    """A YAML/JSON configuration failed validation."""


class CheckpointError(InputError):
    """A checkpoint or model file is missing, corrupt or incompatible."""


class LabelingError(NNPLabError, RuntimeError):
    """A reference calculation failed (e.g. SCF not converged)."""


class PathError(InputError):
    """A path leaves the folder it must stay in (absolute, ``..`` or a symlink out)."""
