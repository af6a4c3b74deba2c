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
        identity: ``order`` is ``0..P-1`` (the input was sorted and all inside the radial
            cutoff), so ``vectors[order]`` is ``vectors`` itself.
    """

    order: torch.Tensor
    center: torch.Tensor
    neighbor: torch.Tensor
    neighbor_species: torch.Tensor
    row_ptr: torch.Tensor
    angular: torch.Tensor
    angular_row_ptr: torch.Tensor
    max_angular: int
    identity: bool = False

    def sort(self, pair_values: torch.Tensor) -> torch.Tensor:
        """Per-pair values of the input list in this layout's order (``values[order]``)."""
        return pair_values if self.identity else pair_values[self.order]

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
    keep = dist < radial_cutoff
    if bool(keep.all()):  # the usual case: the neighbor list was built at this cutoff
        inside = torch.arange(i.shape[0], device=i.device)
        ci, d_in = i, dist
    else:
        inside = torch.nonzero(keep).squeeze(-1)
        ci, d_in = i[inside], dist[inside]
    if ci.numel() > 1 and not bool((ci[1:] >= ci[:-1]).all()):
        perm = torch.argsort(ci, stable=True)
        inside, ci, d_in = inside[perm], ci[perm], d_in[perm]
    identity = ci is i  # all pairs inside and already sorted: nothing moved
    order = inside
    center = ci
    angular = torch.nonzero(d_in < angular_cutoff).squeeze(-1)
    angular_row_ptr = _row_ptr(center[angular], num_centres)
    counts = angular_row_ptr[1:] - angular_row_ptr[:-1]
    return PairLayout(
        order=order,
        center=center,
        neighbor=j if identity else j[order],
        neighbor_species=neighbor_species if identity else neighbor_species[order],
        row_ptr=_row_ptr(center, num_centres),
        angular=angular,
        angular_row_ptr=angular_row_ptr,
        max_angular=int(counts.max()) if num_centres else 0,
        identity=identity,
    )
