"""Hydrogen bonds found by geometry: donor D, hydrogen H, acceptor A and their angles.

A hydrogen bond D–H···A is counted when H is covalently bound to D (both in
``donors``/H), A is an acceptor element of *another* molecule, and

    R_DA ≤ r_da_max (3.5 Å),   r_HA ≤ r_ha_max (2.5 Å),   θ_DHA ≥ angle_min (120°)

(the usual geometric criteria; e.g. Luzar & Chandler 1996 use R_OO ≤ 3.5 Å with an
angle cut for water). Molecules are the connected components of the covalent graph
(ASE's natural cutoffs). Periodic cells use minimum-image distances (vesin neighbour
lists), so the same code serves dimers and liquids.

Reported per bond: ``r_da``, ``r_ha``, ``theta_dha`` (degrees, 180 = linear) and
``acceptor_out_of_plane``: the angle between the A→D direction and the acceptor's local
plane (A and its covalent neighbours; for a single neighbour X, the plane of A, X and
X's other neighbour) — 0° when the H-bond lies in that plane, 90° along its normal. For
water accepting, this is the familiar tilt of the O···O axis out of the H–O–H plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from nnp_lab.errors import InputError

DONORS = ("O", "N", "F")
ACCEPTORS = ("O", "N", "F")


@dataclass(frozen=True)
class HBond:
    """One hydrogen bond (atom indices and geometry; lengths Å, angles degrees)."""

    donor: int
    hydrogen: int
    acceptor: int
    r_da: float
    r_ha: float
    theta_dha: float
    acceptor_out_of_plane: float


def _pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (i, j, vector j − i, minimum image) within ``cutoff``."""
    if atoms.pbc.any():
        from vesin import NeighborList

        if not atoms.pbc.all():
            raise InputError("periodic in some directions only: give pbc all True or all False")
        i, j, d = NeighborList(cutoff=cutoff, full_list=True).compute(
            points=atoms.positions, box=atoms.cell.array, periodic=True, quantities="ijD"
        )
        return np.asarray(i), np.asarray(j), np.asarray(d)
    pos = atoms.positions
    diff = pos[None, :, :] - pos[:, None, :]
    dist = np.linalg.norm(diff, axis=-1)
    i, j = np.nonzero((dist < cutoff) & ~np.eye(len(atoms), dtype=bool))
    return i, j, diff[i, j]


def covalent_neighbours(atoms: Atoms, scale: float = 1.15) -> list[list[int]]:
    """Covalent neighbours of every atom: closer than ``scale`` × the sum of ASE's
    natural (covalent) radii."""
    from ase.neighborlist import natural_cutoffs

    radii = np.asarray(natural_cutoffs(atoms, mult=scale))
    i, j, d = _pairs(atoms, 2.0 * radii.max() + 1e-6)
    bonded = np.linalg.norm(d, axis=1) < radii[i] + radii[j]
    out: list[list[int]] = [[] for _ in range(len(atoms))]
    for a, b in zip(i[bonded], j[bonded]):
        out[int(a)].append(int(b))
    return out


def molecules(atoms: Atoms, neighbours: list[list[int]] | None = None) -> np.ndarray:
    """Molecule index of every atom (connected components of the covalent graph)."""
    nb = covalent_neighbours(atoms) if neighbours is None else neighbours
    mol = np.full(len(atoms), -1, dtype=np.int64)
    n = 0
    for start in range(len(atoms)):
        if mol[start] >= 0:
            continue
        stack = [start]
        mol[start] = n
        while stack:
            a = stack.pop()
            for b in nb[a]:
                if mol[b] < 0:
                    mol[b] = n
                    stack.append(b)
        n += 1
    return mol


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    c = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _acceptor_plane_normal(
    atoms: Atoms, a: int, nb: list[list[int]], vec: dict[tuple[int, int], np.ndarray]
) -> np.ndarray | None:
    """Normal of the acceptor's local plane, or None where no plane is defined."""
    first = nb[a]
    if len(first) >= 2:
        u, v = vec[(a, first[0])], vec[(a, first[1])]
    elif len(first) == 1:
        x = first[0]
        second = [y for y in nb[x] if y != a]
        if not second:
            return None
        u, v = vec[(a, x)], vec[(a, x)] + vec[(x, second[0])]
    else:
        return None
    n = np.cross(u, v)
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-8 else None


def find_hbonds(
    atoms: Atoms,
    r_da_max: float = 3.5,
    r_ha_max: float = 2.5,
    angle_min: float = 120.0,
    donors: tuple[str, ...] = DONORS,
    acceptors: tuple[str, ...] = ACCEPTORS,
) -> list[HBond]:
    """All intermolecular hydrogen bonds of ``atoms`` by the geometric criteria above."""
    if len(atoms) == 0:
        raise InputError("no atoms given")
    if not (0 < r_ha_max <= r_da_max):
        raise InputError(f"need 0 < r_ha_max ≤ r_da_max, got {r_ha_max}, {r_da_max}")
    sym = np.array(atoms.get_chemical_symbols())
    nb = covalent_neighbours(atoms)
    mol = molecules(atoms, nb)
    i, j, d = _pairs(atoms, max(r_da_max, 2.5))
    vec = {(int(a), int(b)): v for a, b, v in zip(i, j, d)}
    dist = np.linalg.norm(d, axis=1)
    out: list[HBond] = []
    for h in np.nonzero(sym == "H")[0]:
        for dn in nb[h]:
            if sym[dn] not in donors:
                continue
            v_dh = vec[(dn, int(h))]
            for k in np.nonzero((i == h) & (dist <= r_ha_max))[0]:
                acc = int(j[k])
                if sym[acc] not in acceptors or mol[acc] == mol[h]:
                    continue
                v_da = v_dh + d[k]  # D → H → A, minimum image along the chain
                r_da = float(np.linalg.norm(v_da))
                theta = _angle(-v_dh, d[k])  # angle at H between H→D and H→A
                if r_da > r_da_max or theta < angle_min:
                    continue
                normal = _acceptor_plane_normal(atoms, acc, nb, vec)
                oop = np.nan if normal is None else 90.0 - _angle(normal, -v_da)
                out.append(
                    HBond(int(dn), int(h), acc, r_da, float(dist[k]), theta, abs(float(oop)))
                )
    return out


def hbond_table(atoms: Atoms, **criteria: float) -> dict[str, np.ndarray]:
    """:func:`find_hbonds` as columns (one array per field)."""
    bonds = find_hbonds(atoms, **criteria)
    fields = HBond.__dataclass_fields__
    return {f: np.array([getattr(b, f) for b in bonds]) for f in fields}
