"""fcc(100) and fcc(111) growth lattices: sites, neighbours, moves and their environments.

A site is ``(z, i, j)``: layer ``z`` (0 = the top substrate layer, always full) and in-plane
indices on an ``L × L`` periodic lattice. Its position is ``i·a1 + j·a2 + z·c`` with ``c``
the stacking vector, so every layer sits in the hollows of the one below (fcc stacking,
ABAB on (100), ABC on (111); hcp sites and stacking faults are not lattice sites — the
off-lattice MD check shows what that leaves out). An atom needs all its *supports* (the
nearest sites of the layer below: 4 on (100), 3 on (111)) occupied; it can move only
when nothing rests on it.

Moves of an atom at ``s`` to an empty, supported target ``t``:

* ``hop``      — nearest in-plane site (4 on (100), 6 on (111));
* ``exchange`` — (100) only: the second in-plane site across a surface atom (the net
  change of the exchange mechanism on a terrace, atoms being identical);
* ``down`` / ``up`` — to the nearest sites of the layer below/above that are not
  supports: descent over, or ascent onto, a step edge (hop or exchange: same occupancy).

The barrier of a move depends on the occupancy of its *environment*: the sites within
``ENV_RADIUS`` nearest-neighbour distances of ``s`` or ``t`` (the same set seen from
``t → s``, so a move and its reverse share one environment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, reference_states

from nnp_lab.errors import InputError

SURFACES = ("100", "111")
METALS = ("Cu", "Ag", "Au", "Al", "Ni", "Pd", "Pt")
KEY_SHIFT = 5  # a catalogue key is (environment bits << KEY_SHIFT) | move index
ENV_RADIUS = 1.5  # in nearest-neighbour distances: NN and second-NN shells of s and t
KINDS = ("hop", "exchange", "down", "up")
_TOL = 1e-6


def lattice_constant(metal: str) -> float:
    """fcc lattice constant (Å) of ``metal`` from ASE's reference data."""
    if metal not in atomic_numbers:
        raise InputError(f"unknown element {metal!r}")
    ref = reference_states[atomic_numbers[metal]]
    if not ref or ref.get("symmetry") != "fcc":
        raise InputError(f"{metal} is not an fcc metal; use one of {', '.join(METALS)}")
    return float(ref["a"])


def decode_key(key: int) -> tuple[int, int]:
    """``(move index, environment bits)`` of a catalogue key."""
    return int(key) & ((1 << KEY_SHIFT) - 1), int(key) >> KEY_SHIFT


def encode_key(move: int, bits: int) -> int:
    """Catalogue key of move ``move`` in the environment with occupancy ``bits``."""
    return (int(bits) << KEY_SHIFT) | int(move)


@dataclass(frozen=True)
class Move:
    """One move type: the target offset and the environment (offsets from ``s``)."""

    index: int
    kind: str
    target: tuple[int, int, int]
    environment: tuple[tuple[int, int, int], ...] = field(repr=False)


@dataclass(frozen=True)
class Surface:
    """The geometry of one fcc surface of one metal (lengths in Å)."""

    metal: str
    facet: str
    a: float = 0.0

    def __post_init__(self) -> None:
        if self.facet not in SURFACES:
            raise InputError(f"facet must be one of {SURFACES}, got {self.facet!r}")
        if self.a == 0.0:
            object.__setattr__(self, "a", lattice_constant(self.metal))
        elif self.a <= 0:
            raise InputError(f"lattice constant must be positive, got {self.a}")

    # ------------------------------------------------------------------ geometry
    @property
    def d(self) -> float:
        """Nearest-neighbour distance a/√2."""
        return self.a / np.sqrt(2.0)

    @cached_property
    def vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """In-plane lattice vectors ``a1, a2`` and the stacking vector ``c``."""
        d, a = self.d, self.a
        if self.facet == "100":
            a1, a2 = np.array([d, 0.0, 0.0]), np.array([0.0, d, 0.0])
            c = np.array([d / 2, d / 2, a / 2])
        else:
            a1, a2 = np.array([d, 0.0, 0.0]), np.array([d / 2, d * np.sqrt(3) / 2, 0.0])
            c = (a1 + a2) / 3 + np.array([0.0, 0.0, a / np.sqrt(3)])
        return a1, a2, c

    def position(self, site: np.ndarray | tuple[int, int, int]) -> np.ndarray:
        """Cartesian position(s) of site(s) ``(z, i, j)`` (unwrapped)."""
        s = np.asarray(site, dtype=float)
        a1, a2, c = self.vectors
        return s[..., 0, None] * c + s[..., 1, None] * a1 + s[..., 2, None] * a2

    def _shell(self, dz: int, radius: float, reach: int = 4) -> list[tuple[int, int, int]]:
        """Offsets of layer ``dz`` within ``radius`` (Å) of the origin, sorted by distance."""
        out = []
        for di in range(-reach, reach + 1):
            for dj in range(-reach, reach + 1):
                r = np.linalg.norm(self.position((dz, di, dj)))
                if 1e-9 < r <= radius + _TOL:
                    out.append((round(r, 6), (dz, di, dj)))
        return [o for _, o in sorted(out)]

    @cached_property
    def lateral(self) -> tuple[tuple[int, int, int], ...]:
        """Nearest in-plane neighbours."""
        return tuple(self._shell(0, self.d))

    @cached_property
    def down(self) -> tuple[tuple[int, int, int], ...]:
        """Supports: nearest sites of the layer below."""
        return tuple(self._shell(-1, self.d))

    @cached_property
    def up(self) -> tuple[tuple[int, int, int], ...]:
        """Nearest sites of the layer above (resting on this site)."""
        return tuple(self._shell(1, self.d))

    @cached_property
    def neighbours(self) -> tuple[tuple[int, int, int], ...]:
        """The 12 fcc nearest neighbours."""
        return self.lateral + self.down + self.up

    def _planar(self, off: tuple[int, int, int]) -> float:
        p = self.position(off)
        return float(np.hypot(p[0], p[1]))

    @cached_property
    def moves(self) -> tuple[Move, ...]:
        """All move types of this surface, with their environments."""
        targets: list[tuple[str, tuple[int, int, int]]] = [("hop", t) for t in self.lateral]
        if self.facet == "100":
            targets += [("exchange", t) for t in self._shell(0, self.a) if t not in self.lateral]
        # descents: the nearest two in-plane shells of layer −1 beyond the supports
        below = [o for o in self._shell(-1, 2.0 * self.d) if o not in self.down]
        radii = sorted({round(self._planar(o), 4) for o in below})
        keep = radii[:2] if self.facet == "111" else radii[:1]
        downs = [o for o in below if round(self._planar(o), 4) in keep]
        targets += [("down", o) for o in downs]
        targets += [("up", (1, -o[1], -o[2])) for o in downs]
        moves = []
        for k, (kind, t) in enumerate(targets):
            moves.append(Move(k, kind, t, self._environment(t)))
        return tuple(moves)

    def _environment(self, t: tuple[int, int, int]) -> tuple[tuple[int, int, int], ...]:
        """Sites within ENV_RADIUS·d of the origin or of ``t`` (neither of them), ordered."""
        radius = ENV_RADIUS * self.d + _TOL
        pt = self.position(t)
        env = set()
        for dz in range(min(0, t[0]) - 3, max(0, t[0]) + 4):
            for di in range(-5, 6):
                for dj in range(-5, 6):
                    o = (dz, di, dj)
                    if o in ((0, 0, 0), t):
                        continue
                    p = self.position(o)
                    if np.linalg.norm(p) <= radius or np.linalg.norm(p - pt) <= radius:
                        env.add(o)
        return tuple(sorted(env))

    @cached_property
    def reverse(self) -> tuple[int, ...]:
        """``reverse[m]``: the move that undoes move ``m``."""
        index = {m.target: m.index for m in self.moves}
        return tuple(index[(-m.target[0], -m.target[1], -m.target[2])] for m in self.moves)

    @cached_property
    def _env_index(self) -> tuple[dict[tuple[int, int, int], int], ...]:
        return tuple({o: e for e, o in enumerate(m.environment)} for m in self.moves)

    def reverse_key(self, key: int) -> int:
        """Key of the move that undoes ``key``, seen from its final state."""
        m, bits = decode_key(key)
        r = self.reverse[m]
        t = self.moves[m].target
        index = self._env_index[m]
        out = 0
        for e, o in enumerate(self.moves[r].environment):
            rel = (o[0] + t[0], o[1] + t[1], o[2] + t[2])
            if (bits >> index[rel]) & 1:
                out |= 1 << e
        return encode_key(r, out)

    # ------------------------------------------------------------------ structures
    def slab(
        self,
        occupied: np.ndarray,
        size: int,
        substrate_layers: int = 3,
        vacuum: float = 10.0,
    ) -> Atoms:
        """Periodic ``size × size`` slab: ``substrate_layers`` full layers (the top one is
        layer 0) plus the atoms at the sites ``occupied`` (rows ``(z ≥ 1, i, j)``)."""
        a1, a2, _ = self.vectors
        sites = [
            (z, i, j)
            for z in range(1 - substrate_layers, 1)
            for i in range(size)
            for j in range(size)
        ]
        occupied = np.asarray(occupied, dtype=int).reshape(-1, 3)
        if (occupied[:, 0] < 1).any():
            raise InputError("occupied sites must lie above the substrate (z ≥ 1)")
        pos = np.concatenate([self.position(np.array(sites)), self.position(occupied)])
        top = pos[:, 2].max()
        bottom = pos[:, 2].min()
        pos[:, 2] += vacuum - bottom
        cell = np.array([size * a1, size * a2, [0.0, 0.0, top - bottom + 2 * vacuum]])
        atoms = Atoms(self.metal * len(pos), positions=pos, cell=cell, pbc=(True, True, False))
        atoms.wrap()
        tags = np.concatenate(
            [np.repeat(np.arange(substrate_layers, 0, -1), size * size), np.zeros(len(occupied))]
        )
        atoms.set_tags(tags.astype(int))  # 1 = top substrate layer, … ; adatoms 0
        return atoms
