"""Barriers of lattice moves by climbing-image NEB (``ase.mep.NEB``) with any ASE calculator.

``event_structures`` turns a move in an environment (a catalogue key) into periodic slabs
for its initial and final states: the occupied environment sites, every support they
need (recursively: the support rule makes those sites occupied in any real film), full
substrate layers below, nothing else. ``neb_barrier`` relaxes both ends, runs a
climbing-image NEB and returns the barrier and the reaction energy. Exchange paths (the
moving atom takes the place of a surface atom, which pops out at the target) get their
own NEB; a descent or ascent takes the lower of its hop and exchange barriers.

With a :class:`~nnp_lab.dynamics.calculator.CommitteeCalculator` the barrier also gets
the committee spread: the standard deviation over members of ``E_k(saddle) − E_k(initial)``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import BFGS, FIRE

from nnp_lab.apps.crystal_growth.lattice import Surface, decode_key
from nnp_lab.errors import InputError

# 8 × 8 sites: an environment spans at most 5 × 5 sites (6 × 6 with the supports it
# needs), so at least two empty sites separate it from its periodic images (at 6 × 6 they
# touched, and the images changed the barriers)
SLAB_SIZE = {"100": 8, "111": 8}
SUBSTRATE_LAYERS = 3  # the bottom two fixed, the top one relaxes with the film
STABLE_TOL = 0.6  # Å: a relaxed end state whose moving atom left its site is not this move


@dataclass
class BarrierResult:
    """One NEB: forward barrier, reaction energy (final − initial), how it was found."""

    key: int
    move: int
    kind: str
    barrier: float
    delta_e: float
    mechanism: str
    converged: bool
    fmax: float
    steps: int
    spread: float
    status: str
    error: str
    wall_time: float

    @property
    def reverse_barrier(self) -> float:
        return self.barrier - self.delta_e

    def as_dict(self) -> dict:
        return asdict(self)


def _closure(surface: Surface, sites: set[tuple[int, int, int]]) -> set[tuple[int, int, int]]:
    """``sites`` plus every support they need, down to layer 1."""
    out, todo = set(sites), list(sites)
    while todo:
        z, i, j = todo.pop()
        for dz, di, dj in surface.down:
            s = (z + dz, i + di, j + dj)
            if s[0] >= 1 and s not in out:
                out.add(s)
                todo.append(s)
    return out


def event_sites(
    surface: Surface, key: int
) -> tuple[tuple[int, int, int], tuple[int, int, int], list[tuple[int, int, int]]]:
    """Absolute sites ``(s, t, others)`` of a move: the moving atom's initial and final
    site and the other atoms above the substrate (environment + the supports needed)."""
    m, bits = decode_key(key)
    move = surface.moves[m]
    env = move.environment
    empty = [o for e, o in enumerate(env) if not (bits >> e) & 1]
    lowest = min([o[0] for o in empty] + [move.target[0], 0])
    z0 = max(1, 1 - lowest)
    c = SLAB_SIZE[surface.facet] // 2
    s = (z0, c, c)
    t = (z0 + move.target[0], c + move.target[1], c + move.target[2])
    occupied = {(z0 + o[0], c + o[1], c + o[2]) for e, o in enumerate(env) if (bits >> e) & 1}
    occupied = {o for o in occupied if o[0] >= 1}
    others = _closure(surface, occupied | {s, t}) - {s, t}
    empty_abs = {(z0 + o[0], c + o[1], c + o[2]) for o in empty}
    if others & empty_abs:
        raise InputError(f"key {key}: the environment leaves a needed support empty")
    return s, t, sorted(others)


def event_structures(
    surface: Surface, key: int, substrate_layers: int = SUBSTRATE_LAYERS
) -> tuple[Atoms, Atoms, int]:
    """Initial and final slabs of a move, and the index of the moving atom (the last)."""
    s, t, others = event_sites(surface, key)
    size = SLAB_SIZE[surface.facet]
    initial = surface.slab(np.array([*others, s]), size, substrate_layers)
    final = surface.slab(np.array([*others, t]), size, substrate_layers)
    fixed = [k for k, tag in enumerate(initial.get_tags()) if tag >= 2]  # top layer free
    for x in (initial, final):
        x.set_constraint(FixAtoms(indices=fixed))
    return initial, final, len(initial) - 1


def _site_index(
    surface: Surface,
    site: tuple[int, int, int],
    others: list,
    substrate_layers: int = SUBSTRATE_LAYERS,
) -> int | None:
    """Index in :func:`event_structures`' slabs of the atom at ``site`` (None: empty)."""
    size = SLAB_SIZE[surface.facet]
    z, i, j = site
    if z <= 0:
        if z <= -substrate_layers:
            return None
        return ((z + substrate_layers - 1) * size + i % size) * size + j % size
    wrapped = [(o[0], o[1] % size, o[2] % size) for o in others]
    w = (z, i % size, j % size)
    return size * size * substrate_layers + wrapped.index(w) if w in wrapped else None


def exchange_partner(surface: Surface, key: int) -> int | None:
    """Index of the atom an exchange path pushes out — a support of the initial site that
    is a nearest neighbour of the target — or None (ascents, or no such atom)."""
    m, _ = decode_key(key)
    move = surface.moves[m]
    if move.kind not in ("exchange", "down"):
        return None
    s, _, others = event_sites(surface, key)
    for d in surface.down:
        rel = np.subtract(move.target, d)
        if np.isclose(np.linalg.norm(surface.position(tuple(rel))), surface.d, atol=1e-3):
            return _site_index(surface, (s[0] + d[0], s[1] + d[1], s[2] + d[2]), others)
    return None


def _relax(atoms: Atoms, calc: Calculator, fmax: float, steps: int) -> bool:
    atoms.calc = calc
    opt = BFGS(atoms, logfile=None)
    return bool(opt.run(fmax=fmax, steps=steps))


def _moved(a: Atoms, b: Atoms, index: int) -> float:
    d = a.get_distances(index, [index], mic=True, vector=True)[0]
    return float(np.hypot(d[0], d[1]))


def _neb(
    initial: Atoms,
    final: Atoms,
    make_calc: Callable[[], Calculator],
    images: int,
    fmax: float,
    steps: int,
) -> tuple[list[Atoms], bool, float, int]:
    band = [initial] + [initial.copy() for _ in range(images)] + [final]
    for im in band[1:-1]:
        im.calc = make_calc()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neb = NEB(band, climb=True, method="improvedtangent")
        neb.interpolate(method="idpp", mic=True)
    opt = FIRE(neb, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    f = neb.get_forces()
    return band, converged, float(np.sqrt((f**2).sum(axis=1)).max()), int(opt.nsteps)


def neb_barrier(
    surface: Surface,
    key: int,
    make_calc: Callable[[], Calculator],
    images: int = 5,
    fmax: float = 0.03,
    steps: int = 250,
    mechanisms: tuple[str, ...] = ("hop", "exchange"),
) -> BarrierResult:
    """Climbing-image NEB barrier of the move ``key`` with calculators from ``make_calc``.

    Never raises for a failed calculation: an end state that relaxes away from its site,
    or a NEB that does not converge, is returned with ``status`` ``failed``/``unconverged``.
    """
    t0 = time.perf_counter()
    m, _ = decode_key(key)
    move = surface.moves[m]
    initial, final, a = event_structures(surface, key)
    base = dict(key=int(key), move=m, kind=move.kind, spread=np.nan)

    def fail(msg: str) -> BarrierResult:
        return BarrierResult(
            **base,
            barrier=np.nan,
            delta_e=np.nan,
            mechanism="",
            converged=False,
            fmax=np.nan,
            steps=0,
            status="failed",
            error=msg,
            wall_time=time.perf_counter() - t0,
        )

    ref_i, ref_f = initial.copy(), final.copy()
    film = [k for k, tag in enumerate(initial.get_tags()) if tag == 0]
    for state, ref in ((initial, ref_i), (final, ref_f)):
        _relax(state, make_calc(), fmax / 2, 400)
        if _moved(state, ref, a) > STABLE_TOL:
            return fail("an end state is not stable: the moving atom left its site")
        if max(_moved(state, ref, k) for k in film) > STABLE_TOL:
            # e.g. a cluster on (111) sliding into hcp sites: not a lattice configuration
            return fail("an end state is not stable: the environment left its sites")
    e_i, e_f = initial.get_potential_energy(), final.get_potential_energy()
    paths = []
    if "hop" in mechanisms and move.kind != "exchange":
        paths.append(("hop", final))
    partner = exchange_partner(surface, key) if "exchange" in mechanisms else None
    if partner is not None:
        # exchange: the adatom takes the partner's place, the partner goes to the target
        fin_x = final.copy()
        pos = fin_x.get_positions()
        pos[[partner, a]] = pos[[a, partner]]
        fin_x.set_positions(pos)
        fin_x.set_constraint(initial.constraints)
        fin_x.calc = final.calc
        paths.append(("exchange", fin_x))
    elif move.kind == "exchange":
        return fail("no surface atom to exchange with")
    best = None
    for mech, fin in paths:
        band, conv, fm, n = _neb(initial, fin, make_calc, images, fmax, steps)
        energies = np.array([im.get_potential_energy() for im in band])
        eb = float(energies.max() - e_i)
        if best is None or eb < best[1]:
            best = (mech, eb, conv, fm, n, band, int(np.argmax(energies)))
    mech, eb, conv, fm, n, band, top = best
    spread = np.nan
    members = band[top].calc.results.get("members_energy") if band[top].calc else None
    if members is not None:
        initial.get_potential_energy()
        m0 = initial.calc.results.get("members_energy")
        if m0 is not None:
            spread = float(np.std(np.asarray(members) - np.asarray(m0)))
    return BarrierResult(
        **{**base, "spread": spread},
        barrier=eb,
        delta_e=float(e_f - e_i),
        mechanism=mech,
        converged=conv,
        fmax=fm,
        steps=n,
        status="ok" if conv else "unconverged",
        error="" if conv else f"NEB not converged in {steps} steps (max force {fm:.3f} eV/Å)",
        wall_time=time.perf_counter() - t0,
    )
