"""Path-integral (ring-polymer) molecular dynamics with nnp-lab potentials."""

from nnp_lab.dynamics.pimd.beads import bead_evaluator
from nnp_lab.dynamics.pimd.rpmd import PIMDConfig, RingPolymer, run_pimd, with_isotope

__all__ = ["PIMDConfig", "RingPolymer", "bead_evaluator", "run_pimd", "with_isotope"]
