"""Low-level compute: neighbor lists (vesin) and the torch reference descriptor ops.

This layer imports nothing else from nnp_lab except :mod:`nnp_lab.errors`.
"""

from nnp_lab.kernels.aev_torch import (
    angular_terms,
    build_triples,
    compute_aev,
    cosine_cutoff,
    radial_terms,
    species_pair_index,
)
from nnp_lab.kernels.neighbors import NeighborPairs, neighbor_pairs

__all__ = [
    "NeighborPairs",
    "angular_terms",
    "build_triples",
    "compute_aev",
    "cosine_cutoff",
    "neighbor_pairs",
    "radial_terms",
    "species_pair_index",
]
