"""CSR layout of a neighbor list: pairs sorted by central atom, with row pointers.

Every descriptor backend starts from this layout: the radial list holds the pairs inside
the radial cutoff sorted by centre (``row_ptr`` delimits each atom's pairs) and the angular
list indexes the subset inside the (smaller) angular cutoff, still grouped by centre. A
fused kernel then loops over an atom's pairs (radial) and over the unordered pairs of its
angular neighbours (triples) without any per-triple array in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PairLayout:
    """Neighbor list grouped by centre atom.

    Attributes:
        order: (Pr,) indices of the input pairs inside the radial cutoff, sorted by centre.
        center: (Pr,) centre atom of each sorted pair.
        neighbor: (Pr,) neighbour atom of each sorted pair.
        neighbor_species: (Pr,) species index of the neighbour.
        row_ptr: (N + 1,) atom a owns sorted pairs ``row_ptr[a]:row_ptr[a+1]``.
        angular: (Pa,) positions in the sorted radial list of the pairs inside the angular
            cutoff (ascending, hence grouped by centre).
        angular_row_ptr: (N + 1,) atom a owns ``angular[angular_row_ptr[a]:angular_row_ptr[a+1]]``.
        max_angular: largest number of angular neighbours of any atom.
    """

    order: torch.Tensor
    center: torch.Tensor
    neighbor: torch.Tensor
    neighbor_species: torch.Tensor
    row_ptr: torch.Tensor
    angular: torch.Tensor
    angular_row_ptr: torch.Tensor
    max_angular: int

    @property
    def num_atoms(self) -> int:
        return int(self.row_ptr.shape[0] - 1)

    def num_triples(self) -> int:
        counts = self.angular_row_ptr[1:] - self.angular_row_ptr[:-1]
        return int((counts * (counts - 1) // 2).sum())


def _row_ptr(center: torch.Tensor, n_atoms: int) -> torch.Tensor:
    counts = torch.bincount(center, minlength=n_atoms)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


@torch.no_grad()
def pair_layout(
    species: torch.Tensor,
    vectors: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    radial_cutoff: float,
    angular_cutoff: float,
) -> PairLayout:
    """Sort a full neighbor list by centre and build the radial/angular CSR pointers."""
    return centre_layout(
        int(species.shape[0]), i, j, species[j], vectors, radial_cutoff, angular_cutoff
    )


@torch.no_grad()
def centre_layout(
    num_centres: int,
    i: torch.Tensor,
    j: torch.Tensor,
    neighbor_species: torch.Tensor,
    vectors: torch.Tensor,
    radial_cutoff: float,
    angular_cutoff: float,
) -> PairLayout:
    """Layout for descriptors of ``num_centres`` centres (``i`` in ``0..num_centres-1``).

    The neighbours ``j`` may lie outside the centre set (their species is given), which is
    what chunked evaluation of a large system needs.
    """
    dist = torch.linalg.vector_norm(vectors.detach(), dim=-1)
    inside = torch.nonzero(dist < radial_cutoff).squeeze(-1)
    order = inside[torch.argsort(i[inside], stable=True)]
    center = i[order]
    angular = torch.nonzero(dist[order] < angular_cutoff).squeeze(-1)
    angular_row_ptr = _row_ptr(center[angular], num_centres)
    counts = angular_row_ptr[1:] - angular_row_ptr[:-1]
    return PairLayout(
        order=order,
        center=center,
        neighbor=j[order],
        neighbor_species=neighbor_species[order],
        row_ptr=_row_ptr(center, num_centres),
        angular=angular,
        angular_row_ptr=angular_row_ptr,
        max_angular=int(counts.max()) if num_centres else 0,
    )
