"""Barrier data: which environments to compute, NEB on a Dask cluster, a cache, xarray.

Environments come from growth itself: short KMC runs with the bond-counting model at
several conditions visit the configurations a film really shows (adatoms near adatoms,
island edges, kinks, corners, steps between layers); a seeded subset, stratified by move
kind and lateral coordination, is sent to NEB. Every NEB result is cached in SQLite keyed
by (metal, facet, lattice constant, calculator, settings, move key), so a re-run never
pays twice and an interrupted run resumes. A result also gives the reverse move
(barrier − ΔE), so ascents come from descents.

    python -m nnp_lab.apps.crystal_growth.barrier_data --metal Cu --facet 100 -n 250
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import xarray as xr

from nnp_lab._atomic import atomic_write
from nnp_lab.apps.crystal_growth.bond_counting import BondCountingBarriers
from nnp_lab.apps.crystal_growth.kmc import GrowthKMC
from nnp_lab.apps.crystal_growth.lattice import KINDS, Surface, decode_key, encode_key
from nnp_lab.apps.crystal_growth.neb import BarrierResult, event_sites, neb_barrier
from nnp_lab.errors import InputError

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "crystal_growth"
SCHEMA = 2  # v2: 8 × 8 × 3 slabs, 5 images, fmax 0.03 eV/Å, ≤ 250 steps


def harvest_keys(surface: Surface, seed: int = 0) -> np.ndarray:
    """Environment keys met in short bond-counting growth runs (submonolayer and
    multilayer, reversible attachment so edges, kinks and detachment all occur)."""
    keys: set[int] = set()
    for k, (temp, cov, e_n) in enumerate(((300, 0.3, 0.25), (450, 1.5, 0.2), (350, 2.5, 0.3))):
        kmc = GrowthKMC(
            surface,
            BondCountingBarriers(e_d=0.45, e_n=e_n, e_es=0.1, e_x=0.9),
            size=40,
            layers=10,
            temperature=temp,
            flux=5.0,
            seed=seed + k,
        )
        kmc.run(coverage=cov, snapshots=1, keep_frames=False)
        keys.update(kmc.barrier_of)
    return np.array(sorted(keys), dtype=np.int64)


def terrace_key(surface: Surface, move: int) -> int:
    """Key of ``move`` for a lone adatom on a flat terrace (only the layers below full)."""
    env = surface.moves[move].environment
    return encode_key(move, sum(1 << e for e, o in enumerate(env) if o[0] < 0))


def canonical(surface: Surface, key: int) -> int:
    """The direction computed by NEB: descents rather than ascents."""
    m, _ = decode_key(key)
    return surface.reverse_key(key) if surface.moves[m].kind == "up" else int(key)


def physical(surface: Surface, key: int) -> bool:
    """The environment is one a film can have (no needed support left empty)."""
    try:
        event_sites(surface, key)
    except InputError:
        return False
    return True


def select_keys(
    surface: Surface, keys: np.ndarray, n: int, seed: int = 0, exchange_share: float = 0.15
) -> list[int]:
    """``n`` canonical keys, stratified by (move kind, lateral coordination); terrace
    exchanges (rare where hops are cheaper) at most ``exchange_share`` of them. The lone
    adatom's terrace hop, the move that sets the diffusion constant, is always one."""
    rng = np.random.default_rng(seed)
    first = terrace_key(surface, 0)
    cands = sorted({canonical(surface, int(k)) for k in keys} - {first})
    cands = [k for k in cands if physical(surface, k)]
    coord = BondCountingBarriers().lateral_neighbours(surface, np.array(cands))
    strata: dict[tuple[str, int], list[int]] = {}
    for k, c in zip(cands, coord):
        strata.setdefault((surface.moves[decode_key(k)[0]].kind, int(c)), []).append(k)
    for v in strata.values():
        rng.shuffle(v)
    out: list[int] = [first]
    n_x, max_x = 0, int(exchange_share * n)
    while len(out) < n and any(strata.values()):
        for (kind, _), v in strata.items():  # round robin over strata
            if v and len(out) < n and (kind != "exchange" or n_x < max_x):
                out.append(v.pop())
                n_x += kind == "exchange"
        if n_x >= max_x:
            for (kind, _), v in strata.items():
                if kind == "exchange":
                    v.clear()
    return sorted(out)


class BarrierCache:
    """SQLite cache of NEB results (WAL; one row per calculator + move)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS barriers (id TEXT PRIMARY KEY, result TEXT NOT NULL)"
        )
        self.db.commit()

    @staticmethod
    def ident(surface: Surface, calc_name: str, key: int) -> str:
        return f"v{SCHEMA}|{surface.metal}|{surface.facet}|{surface.a:.6f}|{calc_name}|{key}"

    def get(self, surface: Surface, calc_name: str, key: int) -> BarrierResult | None:
        row = self.db.execute(
            "SELECT result FROM barriers WHERE id=?", (self.ident(surface, calc_name, key),)
        ).fetchone()
        return BarrierResult(**json.loads(row[0])) if row else None

    def put(self, surface: Surface, calc_name: str, result: BarrierResult) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO barriers VALUES (?, ?)",
            (self.ident(surface, calc_name, result.key), json.dumps(result.as_dict())),
        )
        self.db.commit()


def _emt():
    from ase.calculators.emt import EMT

    return EMT()


def _task(metal: str, facet: str, a: float, key: int) -> dict:
    return neb_barrier(Surface(metal, facet, a), key, _emt).as_dict()


def compute_barriers(
    surface: Surface,
    keys: Iterable[int],
    cache: BarrierCache,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[BarrierResult]:
    """EMT NEB barriers of ``keys`` (cached), run as tasks on a Dask LocalCluster."""
    keys = [int(k) for k in keys]
    done = {k: cache.get(surface, "EMT", k) for k in keys}
    todo = [k for k, r in done.items() if r is None]
    if todo:
        from dask.distributed import Client, LocalCluster, as_completed

        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                host="127.0.0.1",
                processes=True,
                # no dashboard; the scheduler's HTTP endpoints on a free loopback port
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            ) as cluster,
            Client(cluster) as client,
        ):
            futures = [
                client.submit(_task, surface.metal, surface.facet, surface.a, k, pure=False)
                for k in todo
            ]
            for n, fut in enumerate(as_completed(futures), 1):
                res = BarrierResult(**fut.result())
                cache.put(surface, "EMT", res)
                done[res.key] = res
                if progress is not None:
                    progress(n, len(todo))
    return [done[k] for k in keys]


def to_dataset(surface: Surface, results: list[BarrierResult], method: str = "EMT") -> xr.Dataset:
    """Barrier results as an ``xarray.Dataset`` along ``event`` (one row per NEB)."""
    fields = (
        "key",
        "move",
        "barrier",
        "delta_e",
        "converged",
        "fmax",
        "steps",
        "spread",
        "wall_time",
    )
    data = {f: ("event", np.array([getattr(r, f) for r in results])) for f in fields}
    for f in ("kind", "mechanism", "status", "error"):
        data[f] = ("event", np.array([getattr(r, f) for r in results], dtype=object))
    ds = xr.Dataset(data)
    for f in ("barrier", "delta_e", "spread"):
        ds[f].attrs["units"] = "eV"
    ds.attrs.update(
        metal=surface.metal,
        facet=surface.facet,
        lattice_constant=surface.a,
        method=method,
        description="climbing-image NEB barriers of lattice moves (nnp_lab.apps.crystal_growth)",
    )
    return ds


def load_barriers(metal: str, facet: str, path: str | Path | None = None) -> xr.Dataset:
    """The shipped (or given) barrier dataset of ``metal``/``facet``."""
    p = Path(path) if path else RESOURCES / f"barriers_{metal}_{facet}.nc"
    if not p.exists():
        raise InputError(
            f"no barrier data {p}: generate it with "
            f"python -m nnp_lab.apps.crystal_growth.barrier_data --metal {metal} --facet {facet}"
        )
    with xr.open_dataset(p, engine="h5netcdf") as ds:
        return ds.load()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="EMT NEB barrier data for the crystal-growth app")
    ap.add_argument("--metal", default="Cu")
    ap.add_argument("--facet", default="100")
    ap.add_argument("-n", type=int, default=250, help="number of environments")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "nnp-lab" / "barriers.sqlite"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    surface = Surface(args.metal, args.facet)
    t0 = time.time()
    keys = select_keys(surface, harvest_keys(surface, args.seed), args.n, args.seed)
    print(f"{len(keys)} environments selected in {time.time() - t0:.0f} s", flush=True)
    results = compute_barriers(
        surface,
        keys,
        BarrierCache(args.cache),
        args.workers,
        progress=lambda d, t: print(f"  NEB {d}/{t}", flush=True) if d % 25 == 0 else None,
    )
    out = Path(args.out) if args.out else RESOURCES / f"barriers_{surface.metal}_{surface.facet}.nc"
    out.parent.mkdir(parents=True, exist_ok=True)
    ds = to_dataset(surface, results)
    atomic_write(out, lambda p: ds.to_netcdf(p, engine="h5netcdf"))
    ok = ds.status.values == "ok"
    kinds = {k: int((ds.kind.values[ok] == k).sum()) for k in KINDS}
    print(f"wrote {out}: {ok.sum()} ok of {len(ds.event)} ({kinds}) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
