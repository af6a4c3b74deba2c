"""Dynamics: ASE calculator adapters for potentials and committees (PIMD comes later)."""

from nnp_lab.dynamics.calculator import CommitteeCalculator, NNPCalculator

__all__ = ["CommitteeCalculator", "NNPCalculator"]
