"""Dynamics: the ASE calculator adapter (MD integrators and PIMD come later)."""

from nnp_lab.dynamics.calculator import NNPCalculator

__all__ = ["NNPCalculator"]
