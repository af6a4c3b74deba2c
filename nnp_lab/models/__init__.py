"""Descriptors, per-element networks, the Potential, and save/load."""

from nnp_lab.models.descriptor import ANIDescriptor, DescriptorConfig
from nnp_lab.models.potential import ModelConfig, Potential
from nnp_lab.models.serialization import load, save_potential

__all__ = [
    "ANIDescriptor",
    "DescriptorConfig",
    "ModelConfig",
    "Potential",
    "load",
    "save_potential",
]
