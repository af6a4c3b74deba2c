"""Kinetic Monte Carlo growth on an fcc(100)/(111) lattice (rejection-free, BKL).

    kmc = GrowthKMC(Surface("Cu", "100"), size=200, temperature=300, flux=1.0,
                    barriers=catalogue)            # anything with .barriers(keys) → eV
    result = kmc.run(coverage=0.2, snapshots=10)   # xarray.Dataset over time

Rates are Arrhenius, ``k = ν exp(−E_b / k_B T)``, with the barrier of each move taken
from its environment key (see :mod:`.lattice`): the barrier source is asked once per new
key, in batches, while the crystal grows. Deposition: ``flux`` monolayers per second at
random positions, each atom funnelling down to a supported site.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import xarray as xr
from ase.units import kB
from numba import njit

from nnp_lab.apps.crystal_growth import kmc_kernels as K
from nnp_lab.apps.crystal_growth.lattice import KEY_SHIFT, KINDS, Surface, decode_key, encode_key

__all__ = ["BarrierSource", "GrowthKMC", "decode_key", "encode_key", "island_sizes"]
from nnp_lab.errors import InputError

PENDING_MAX = 8192


class BarrierSource(Protocol):
    """Anything that turns environment keys into barriers (eV)."""

    def barriers(self, surface: Surface, keys: np.ndarray) -> np.ndarray: ...


@dataclass
class Tables:
    """The surface's move tables as flat arrays for the compiled loop."""

    target: np.ndarray
    env: np.ndarray
    env_n: np.ndarray
    down: np.ndarray
    up: np.ndarray
    affect: np.ndarray
    kinds: np.ndarray

    @classmethod
    def of(cls, surface: Surface) -> Tables:
        moves = surface.moves
        if len(moves) >= 1 << KEY_SHIFT:
            raise InputError(f"{len(moves)} moves do not fit the key layout")
        width = max(len(m.environment) for m in moves)
        if width > 62 - KEY_SHIFT:
            raise InputError(f"environments of {width} sites do not fit a 64-bit key")
        env = np.zeros((len(moves), width, 3), dtype=np.int64)
        for m in moves:
            env[m.index, : len(m.environment)] = m.environment
        affect = {(0, 0, 0), *surface.up}
        for m in moves:
            affect.add(m.target)
            affect.update(tuple(np.add(m.target, d)) for d in surface.down)
            affect.update(m.environment)
        return cls(
            target=np.array([m.target for m in moves], dtype=np.int64),
            env=env,
            env_n=np.array([len(m.environment) for m in moves], dtype=np.int64),
            down=np.array(surface.down, dtype=np.int64),
            up=np.array(surface.up, dtype=np.int64),
            affect=np.array(sorted(affect), dtype=np.int64),
            kinds=np.array([KINDS.index(m.kind) for m in moves], dtype=np.int64),
        )


@njit(cache=True)
def _islands(layer: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Sizes of the connected clusters (lateral neighbours, periodic) of a 2D layer."""
    n = layer.shape[0]
    parent = np.arange(n * n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in range(n):
        for j in range(n):
            if layer[i, j] == 0:
                continue
            for k in range(lateral.shape[0]):
                ii, jj = (i + lateral[k, 1]) % n, (j + lateral[k, 2]) % n
                if layer[ii, jj]:
                    a, b = find(i * n + j), find(ii * n + jj)
                    if a != b:
                        parent[a] = b
    sizes = np.zeros(n * n, dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if layer[i, j]:
                sizes[find(i * n + j)] += 1
    return sizes[sizes > 0]


def island_sizes(layer: np.ndarray, surface: Surface) -> np.ndarray:
    """Sizes of the islands (laterally connected clusters) of one layer's occupancy."""
    return _islands(np.ascontiguousarray(layer, dtype=np.uint8), np.array(surface.lateral))


class GrowthKMC:
    """A growing film on ``size × size`` sites of ``surface`` with ``layers`` layers."""

    def __init__(
        self,
        surface: Surface,
        barriers: BarrierSource,
        size: int = 100,
        layers: int = 12,
        temperature: float = 300.0,
        flux: float = 1.0,
        prefactor: float = 1e12,
        seed: int = 0,
    ):
        if size < 8:
            raise InputError(f"size must be at least 8 sites, got {size}")
        if layers < 4:
            raise InputError(f"layers must be at least 4, got {layers}")
        if temperature <= 0 or flux < 0 or prefactor <= 0:
            raise InputError("temperature and prefactor must be positive and flux ≥ 0")
        self.surface, self.source = surface, barriers
        self.size, self.layers = int(size), int(layers)
        self.temperature, self.flux, self.prefactor = float(temperature), float(flux), prefactor
        self.tables = Tables.of(surface)
        n_sites = self.layers * self.size**2
        self.occ = np.zeros(n_sites, dtype=np.uint8)
        self.occ[: self.size**2] = 1  # layer 0: the substrate
        self.rate = np.zeros(n_sites)
        self.leaf0 = 1 << max(1, math.ceil(math.log2(n_sites)))
        self.tree = np.zeros(2 * self.leaf0)
        self._hkeys = np.full(1 << 14, -1, dtype=np.int64)
        self._hvals = np.zeros(1 << 14)
        self.barrier_of: dict[int, float] = {}
        self.rng = K.seed_state(seed)
        self.clock = np.zeros(1)
        self.counters = np.zeros(2, dtype=np.int64)  # events, deposits
        self.kind_counts = np.zeros(len(KINDS) + 1, dtype=np.int64)
        self.layer_count = np.zeros(self.layers, dtype=np.int64)
        self.layer_count[0] = self.size**2
        self._pending = np.zeros(PENDING_MAX, dtype=np.int64)
        self._dirty = np.zeros(n_sites, dtype=np.int64)
        self._flag = np.zeros(n_sites, dtype=np.uint8)
        self.model_calls = 0
        self.model_time = 0.0
        self._source_version = getattr(barriers, "version", None)
        self._stale = False

    # ------------------------------------------------------------------ catalogue
    def _add_keys(self, keys: np.ndarray) -> None:
        keys = np.unique(keys)
        keys = keys[[int(k) not in self.barrier_of for k in keys]]
        if len(keys) == 0:
            return
        t0 = _time.perf_counter()
        eb = np.asarray(self.source.barriers(self.surface, keys), dtype=float)
        self.model_time += _time.perf_counter() - t0
        self.model_calls += 1
        version = getattr(self.source, "version", None)
        if version != self._source_version and self.barrier_of:
            # the source changed (a refitted model): re-ask every catalogued key so that
            # forward and reverse rates come from the same model
            self._source_version = version
            old = np.fromiter(self.barrier_of, dtype=np.int64, count=len(self.barrier_of))
            self.barrier_of.clear()
            self._hkeys[:] = -1
            self._add_keys(np.concatenate([old, keys]))
            self._stale = True
            return
        self._source_version = version
        if eb.shape != keys.shape or np.isnan(eb).any() or (eb == -np.inf).any():
            raise InputError(
                "the barrier source must return one barrier per key (finite, or +inf for "
                "a move that never happens)"
            )
        beta = 1.0 / (kB * self.temperature)
        for k, e in zip(keys, eb):
            self.barrier_of[int(k)] = float(e)
        if 2 * len(self.barrier_of) > len(self._hkeys):  # grow below half load
            size = len(self._hkeys)
            while 2 * len(self.barrier_of) > size:
                size *= 2
            self._hkeys = np.full(size, -1, dtype=np.int64)
            self._hvals = np.zeros(size)
            keys = np.fromiter(self.barrier_of, dtype=np.int64, count=len(self.barrier_of))
            eb = np.array([self.barrier_of[int(k)] for k in keys])
        rates = self.prefactor * np.exp(-beta * np.maximum(eb, 0.0))
        K.table_put(self._hkeys, self._hvals, keys.astype(np.int64), rates)

    def _refresh(self, sites: np.ndarray) -> None:
        t = self.tables
        while True:
            n_pending = K.refresh(
                self.occ,
                sites,
                len(sites),
                self.rate,
                self.tree,
                self.leaf0,
                self.size,
                self.layers,
                t.target,
                t.env,
                t.env_n,
                t.down,
                t.up,
                self._hkeys,
                self._hvals,
                self._pending,
                0,
            )
            if n_pending == 0:
                return
            self._add_keys(self._pending[:n_pending].copy())

    def refresh_all(self) -> None:
        """Recompute every rate (after changing occupancy or the catalogue by hand)."""
        self._refresh(np.arange(self.size**2, len(self.occ), dtype=np.int64))
        K.tree_rebuild(self.tree, self.leaf0)

    # ------------------------------------------------------------------ state
    @property
    def time(self) -> float:
        return float(self.clock[0])

    @property
    def grid(self) -> np.ndarray:
        """Occupancy as ``(layer, i, j)``."""
        return self.occ.reshape(self.layers, self.size, self.size)

    @property
    def coverage(self) -> float:
        """Deposited monolayers."""
        return float(self.counters[1]) / self.size**2

    def place(self, sites: np.ndarray) -> None:
        """Put atoms at ``(z, i, j)`` sites (each must be supported), then refresh rates."""
        for z, i, j in np.asarray(sites, dtype=int).reshape(-1, 3):
            if not 1 <= z < self.layers - 2:
                raise InputError(f"layer {z} outside 1..{self.layers - 3}")
            p = (z * self.size + i % self.size) * self.size + j % self.size
            if self.occ[p] or not K.supported(
                self.occ, z, i, j, self.size, self.layers, self.tables.down
            ):
                raise InputError(f"site {(z, i, j)} is occupied or not supported")
            self.occ[p] = 1
            self.layer_count[z] += 1
        self.refresh_all()

    # ------------------------------------------------------------------ running
    def advance(
        self,
        max_events: int = 2**62,
        until_time: float = math.inf,
        until_deposits: int = 2**62,
    ) -> int:
        """Run until a limit; returns the number of events done."""
        t = self.tables
        start = int(self.counters[0])
        if int(self.counters[0]) == 0 and self.tree[1] == 0.0:
            self.refresh_all()
        dep_rate = self.flux * self.size**2
        while True:
            status, n_pending, n_dirty = K.run(
                self.occ,
                self.rate,
                self.tree,
                self.leaf0,
                self.size,
                self.layers,
                t.target,
                t.env,
                t.env_n,
                t.down,
                t.up,
                t.affect,
                self._hkeys,
                self._hvals,
                dep_rate,
                self.rng,
                self.clock,
                self.counters,
                start + max_events - int(self.counters[0]),
                until_time,
                until_deposits,
                self._pending,
                self._dirty,
                self._flag,
                t.kinds,
                self.kind_counts,
                self.layer_count,
            )
            if status == 1:
                self._add_keys(self._pending[:n_pending].copy())
                self._refresh(self._dirty[:n_dirty].copy())
                if self._stale:  # every rate may have changed
                    self._stale = False
                    self.refresh_all()
                continue
            if status == 2:
                raise InputError(
                    f"the film reached the top of the {self.layers}-layer lattice: use more layers"
                )
            return int(self.counters[0]) - start

    def observe(self) -> dict[str, Any]:
        """Coverage per layer, island statistics of the growing layer, roughness."""
        grid = self.grid
        theta = grid.reshape(self.layers, -1).mean(axis=1)
        theta[0] = 1.0
        # the first incomplete layer above the substrate with atoms
        z_grow = 1
        for z in range(1, self.layers):
            if 0.0 < theta[z] < 1.0:
                z_grow = z
                break
        sizes = island_sizes(grid[z_grow], self.surface)
        islands = sizes[sizes >= 2]
        dh = theta - np.append(theta[1:], 0.0)  # fraction of columns of height z
        h = np.arange(self.layers)
        mean_h = float((dh * h).sum())
        return {
            "time": self.time,
            "coverage": self.coverage,
            "layer_coverage": theta.copy(),
            "islands": len(islands),
            "island_density": len(islands) / self.size**2,
            "mean_island_size": float(islands.mean()) if len(islands) else 0.0,
            "monomers": int((sizes == 1).sum()),
            "roughness": float(np.sqrt((dh * (h - mean_h) ** 2).sum())),
            "events": int(self.counters[0]),
            "kind_counts": self.kind_counts.copy(),
            "island_sizes": islands,
        }

    def run(
        self,
        coverage: float,
        snapshots: int = 10,
        keep_frames: bool = True,
        progress: Any = None,
    ) -> xr.Dataset:
        """Deposit ``coverage`` monolayers; observe at ``snapshots`` equal coverage steps.
        Returns the time series as an ``xarray.Dataset`` (dims ``snapshot``, ``layer``,
        and ``frame_*`` occupancies when ``keep_frames``)."""
        if self.flux <= 0:
            raise InputError("run(coverage=...) needs a positive flux")
        if coverage <= 0:
            raise InputError(f"coverage must be positive, got {coverage}")
        obs, frames = [], []
        wall0 = _time.perf_counter()
        target_total = round(coverage * self.size**2) + int(self.counters[1])
        for k in range(1, snapshots + 1):
            goal = int(self.counters[1]) + (target_total - int(self.counters[1])) // (
                snapshots - k + 1
            )
            self.advance(until_deposits=goal)
            obs.append(self.observe())
            if keep_frames:
                frames.append(self.grid.copy())
            if progress is not None:
                progress(k, snapshots)
        wall = _time.perf_counter() - wall0
        return self._dataset(obs, frames, wall)

    def _dataset(self, obs: list[dict], frames: list[np.ndarray], wall: float) -> xr.Dataset:
        scalars = (
            "time",
            "coverage",
            "islands",
            "island_density",
            "mean_island_size",
            "monomers",
            "roughness",
            "events",
        )
        data = {k: ("snapshot", np.array([o[k] for o in obs])) for k in scalars}
        data["layer_coverage"] = (
            ("snapshot", "layer"),
            np.array([o["layer_coverage"] for o in obs]),
        )
        data["event_counts"] = (
            ("snapshot", "event_kind"),
            np.array([o["kind_counts"] for o in obs]),
        )
        if frames:
            data["occupancy"] = (("snapshot", "layer", "i", "j"), np.array(frames))
        ds = xr.Dataset(data, coords={"event_kind": [*KINDS, "deposit"]})
        units = {"time": "s", "coverage": "ML", "island_density": "1/site", "roughness": "layers"}
        for k, u in units.items():
            ds[k].attrs["units"] = u
        ds.attrs.update(
            metal=self.surface.metal,
            facet=self.surface.facet,
            lattice_constant=self.surface.a,
            size=self.size,
            temperature=self.temperature,
            flux=self.flux,
            prefactor=self.prefactor,
            catalogue_size=len(self.barrier_of),
            model_calls=self.model_calls,
            model_time_s=self.model_time,
            wall_time_s=wall,
        )
        return ds
