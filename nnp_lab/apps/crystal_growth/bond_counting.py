"""The bond-counting barrier model (Clarke–Vvedensky type): a baseline and the model of
nucleation-theory checks.

``E_b = E_d + n·E_n`` for an atom with ``n`` lateral neighbours at its initial site,
plus ``E_es`` for a descent (the Ehrlich–Schwoebel barrier) and ``E_d + E_es_up`` for an
ascent; exchanges cost ``E_x`` (infinite: switched off). ``irreversible=True`` makes
every atom with a lateral neighbour immobile — attachment is final, critical nucleus
``i* = 1``.
"""

from __future__ import annotations

import numpy as np

from nnp_lab.apps.crystal_growth.lattice import Surface, decode_key


class BondCountingBarriers:
    """Barriers from lateral bond counts (eV)."""

    def __init__(
        self,
        e_d: float = 0.4,
        e_n: float = 0.3,
        e_es: float = 0.0,
        e_x: float = np.inf,
        irreversible: bool = False,
    ):
        self.e_d, self.e_n, self.e_es, self.e_x = e_d, e_n, e_es, e_x
        self.irreversible = irreversible

    def lateral_neighbours(self, surface: Surface, keys: np.ndarray) -> np.ndarray:
        """Occupied lateral neighbours of the moving atom's initial site, per key."""
        out = np.zeros(len(keys), dtype=int)
        lateral = set(surface.lateral)
        for n, key in enumerate(keys):
            m, bits = decode_key(key)
            env = surface.moves[m].environment
            out[n] = sum((bits >> e) & 1 for e, o in enumerate(env) if o in lateral)
        return out

    def barriers(self, surface: Surface, keys: np.ndarray) -> np.ndarray:
        n = self.lateral_neighbours(surface, keys)
        kinds = np.array([surface.moves[decode_key(k)[0]].kind for k in keys])
        eb = self.e_d + self.e_n * n
        eb = np.where(kinds == "down", eb + self.e_es, eb)
        eb = np.where(kinds == "up", eb + self.e_es, eb)
        eb = np.where(kinds == "exchange", self.e_x + self.e_n * n, eb)
        if self.irreversible:
            eb = np.where(n > 0, np.inf, eb)
        return eb
