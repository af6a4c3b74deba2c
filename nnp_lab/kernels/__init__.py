"""Low-level compute: neighbor lists (vesin), descriptor kernels and backend dispatch.

This layer imports nothing else from nnp_lab except :mod:`nnp_lab.errors`.
"""

from nnp_lab.kernels.aev_torch import (
    aev_torch,
    angular_terms,
    build_triples,
    cosine_cutoff,
    radial_terms,
    species_pair_index,
)
from nnp_lab.kernels.backend import BACKENDS, compute_aev, resolve_backend
from nnp_lab.kernels.layout import PairLayout, pair_layout
from nnp_lab.kernels.neighbors import NeighborPairs, neighbor_pairs
from nnp_lab.kernels.params import AEVParams

__all__ = [
    "BACKENDS",
    "AEVParams",
    "NeighborPairs",
    "PairLayout",
    "aev_torch",
    "angular_terms",
    "build_triples",
    "compute_aev",
    "cosine_cutoff",
    "neighbor_pairs",
    "pair_layout",
    "radial_terms",
    "resolve_backend",
    "species_pair_index",
]
