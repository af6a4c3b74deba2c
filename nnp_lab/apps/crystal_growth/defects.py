"""Defects of an off-lattice film: coordination, common-neighbour analysis (CNA) and the
lattice registry, i.e. which atoms sit on the ideal fcc sites the KMC lattice knows.

What the lattice model cannot have, counted here:

- ``off_lattice``: atoms farther than ``0.3 d`` from every ideal site — on (111) the
  hcp hollows (stacking faults), on (100) bridges; also interstitials and amorphous bits;
- ``voids``: empty ideal sites below an occupied site (the film closed over them: buried
  vacancies and the cavities under overhangs); ``vacancies``: the voids with at least
  10 of their 12 neighbour sites occupied;
- ``unsupported``: registered atoms with an empty support site below (overhangs);
- ``hcp``: atoms whose adaptive CNA signature is hcp (a stacking fault plane, or
  twinned islands once covered).

CNA comes from pyscal3 (adaptive CNA, Stukowski 2012); coordination from a vesin
neighbour list with the cutoff halfway between the first and second fcc shells.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from nnp_lab.apps.crystal_growth.lattice import Surface
from nnp_lab.errors import InputError

CNA_NAMES = ("other", "fcc", "hcp", "bcc", "ico")  # pyscal3's structure codes 0..4
REGISTRY_TOLERANCE = 0.3  # × nearest-neighbour distance


def shell_cutoff(surface: Surface) -> float:
    """Neighbour cutoff halfway between the first (d) and second (a) fcc shells."""
    return 0.5 * (surface.d + surface.a)


def coordination_numbers(atoms: Atoms, cutoff: float) -> np.ndarray:
    """Neighbours of every atom within ``cutoff`` Å (periodic cell; a slab needs vacuum
    wider than the cutoff)."""
    from vesin import NeighborList

    if not atoms.cell.volume > 0:
        raise InputError("coordination needs a periodic cell (give the slab a cell)")
    (i,) = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=atoms.positions, box=atoms.cell.array, periodic=True, quantities="i"
    )
    return np.bincount(np.asarray(i, dtype=np.int64), minlength=len(atoms))


def cna_structure(atoms: Atoms) -> np.ndarray:
    """Adaptive-CNA structure code of every atom (index into :data:`CNA_NAMES`)."""
    import warnings

    import pyscal3

    probe = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    with warnings.catch_warnings():  # adatoms and small islands have < 14 neighbours
        warnings.simplefilter("ignore", RuntimeWarning)
        pyscal3.common_neighbor_analysis(probe)
    return np.asarray(probe.arrays["pyscal_structure"], dtype=np.int64)


def register(
    atoms: Atoms, surface: Surface, origin: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ideal site ``(z, i, j)`` (i, j modulo ``size``) of every atom, and the
    distance to it (Å). ``origin`` is the Cartesian position of site (0, 0, 0)."""
    a1, a2, c = surface.vectors
    basis = np.stack([c, a1, a2], axis=1)
    rel = atoms.positions - np.asarray(origin, dtype=float)
    frac = np.linalg.solve(basis, rel.T).T
    z = np.rint(frac[:, 0])
    inplane = rel - z[:, None] * c
    ij = np.linalg.solve(basis[:2, 1:], inplane[:, :2].T).T
    best = np.full(len(atoms), np.inf)
    sites = np.zeros((len(atoms), 3), dtype=np.int64)
    # the nearest in-plane site is one of the four corners of the cell the point lies in
    for di in (0, 1):
        for dj in (0, 1):
            i = np.floor(ij[:, 0]) + di
            j = np.floor(ij[:, 1]) + dj
            pos = surface.position(np.stack([z, i, j], axis=1))
            dist = np.linalg.norm(rel - _wrap_inplane(pos, rel, a1 * size, a2 * size), axis=1)
            better = dist < best
            best[better] = dist[better]
            sites[better] = np.stack([z, i % size, j % size], axis=1)[better]
    return sites, best


def _wrap_inplane(pos: np.ndarray, ref: np.ndarray, l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
    """``pos`` shifted by in-plane periods to the image nearest ``ref``."""
    m = np.stack([l1[:2], l2[:2]], axis=1)
    n = np.rint(np.linalg.solve(m, (ref - pos)[:, :2].T).T)
    return pos + n[:, :1] * l1 + n[:, 1:] * l2


def film_defects(
    atoms: Atoms,
    surface: Surface,
    size: int,
    substrate_layers: int,
    origin: np.ndarray | None = None,
) -> dict[str, Any]:
    """Defect analysis of a film on a ``size × size`` slab whose top substrate layer is
    layer 0 (as built by :meth:`Surface.slab`; film atoms carry tag 0).

    Returns counts (``film``, ``off_lattice``, ``voids``, ``vacancies``, ``unsupported``, ``fcc``,
    ``hcp``, ``other`` over film atoms) and per-atom arrays (``coordination``, ``cna``,
    ``site``, ``residual``, ``registered``).
    """
    if origin is None:
        # atom 0 is site (1 - substrate_layers, 0, 0) of the bottom (fixed) layer
        origin = atoms.positions[0] - surface.position((1 - substrate_layers, 0, 0))
    tags = atoms.get_tags()
    film = tags == 0
    coord = coordination_numbers(atoms, shell_cutoff(surface))
    cna = cna_structure(atoms)
    sites, resid = register(atoms, surface, origin, size)
    registered = resid < REGISTRY_TOLERANCE * surface.d
    zmax = int(sites[:, 0].max()) + 1
    zmin = 1 - substrate_layers
    occ = np.zeros((zmax - zmin + 2, size, size), dtype=bool)
    s = sites[registered]
    occ[s[:, 0] - zmin, s[:, 1], s[:, 2]] = True

    def occupied(z: np.ndarray, off: tuple[int, int, int]) -> np.ndarray:
        zz = z[:, 0] + off[0] - zmin
        ok = (zz >= 0) & (zz < occ.shape[0])
        out = np.zeros(len(z), dtype=bool)
        out[ok] = occ[zz[ok], (z[ok, 1] + off[1]) % size, (z[ok, 2] + off[2]) % size]
        return out

    reg_film = sites[registered & film & (sites[:, 0] >= 1)]
    unsupported = np.zeros(len(reg_film), dtype=bool)
    for off in surface.down:
        unsupported |= ~occupied(reg_film, off)
    empty = np.argwhere(~occ[1 - zmin : zmax - zmin])  # film layers 1 .. zmax-1
    empty[:, 0] += 1
    covered = np.zeros(len(empty), dtype=bool)
    for off in surface.up:
        covered |= occupied(empty, off)
    voids = empty[covered]
    around = sum(occupied(voids, off).astype(int) for off in surface.neighbours)
    counts = {name: int((cna[film] == k).sum()) for k, name in enumerate(CNA_NAMES)}
    return {
        "film": int(film.sum()),
        "off_lattice": int((film & ~registered).sum()),
        "voids": int(covered.sum()),
        "vacancies": int((np.asarray(around) >= 10).sum()),
        "unsupported": int(unsupported.sum()),
        **counts,
        "coordination": coord,
        "cna": cna,
        "site": sites,
        "residual": resid,
        "registered": registered,
    }
