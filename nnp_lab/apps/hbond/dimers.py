"""Rigid H-bonded dimers built from H-bond coordinates, and the scans over them.

A dimer is a donor monomer (its D–H points at the partner) and an acceptor monomer (its
atom A receives the bond), both rigid. Six coordinates place the acceptor:

``r_da``    D···A distance (Å)
``theta``   the D–H···A angle at H (degrees; 180 = linear)
``omega``   direction of the D–H···A bend, a rotation about D–H (degrees; 0 = bending in
            the donor's plane)
``phi``     out-of-plane tilt of the acceptor's receiving direction (degrees): the
            direction A→H makes with the acceptor's local plane (water accepting at its
            tetrahedral lone pair: ≈ 55°). Same convention as
            :attr:`~nnp_lab.apps.hbond.geometry.HBond.acceptor_out_of_plane` up to sign.
``psi``     in-plane angle of the receiving direction from the acceptor's "away" axis
            (degrees; a carbonyl O's sp² lone pair: ≈ ±60°)
``chi``     spin of the acceptor about the A···H axis (degrees)

The acceptor's local frame: ``b`` = unit(A − mean of its covalent neighbours) (the
bisector for water, the C₃ axis for ammonia, along C=O for a carbonyl), ``p`` = normal of
its local plane (A and two neighbours, or for a single neighbour X the plane of A, X and
X's other neighbour). The receiving direction is ``b`` turned by ``psi`` about ``p`` and
tilted by ``phi`` towards ``p``; the acceptor is rotated so that it points at H, with
``chi`` = 0 when ``p`` (made ⊥ to the axis) lies along the bend-plane normal.

Monomer geometries: ASE's G2 set (``ase.build.molecule``: MP2/6-31G(d) geometries) for
water, ammonia, methanol and formic acid; formamide (not in G2) from S22's formamide
dimer. Equilibrium coordinates are found by minimising the GFN2-xTB interaction energy
over the six coordinates (:func:`equilibrium`); scans are taken around them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import cache

import numpy as np
from ase import Atoms

from nnp_lab.errors import InputError


@dataclass(frozen=True)
class HBondCoords:
    """The six rigid-body coordinates of a dimer (Å, degrees)."""

    r_da: float
    theta: float = 180.0
    omega: float = 0.0
    phi: float = 0.0
    psi: float = 0.0
    chi: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


COORDS = ("r_da", "theta", "omega", "phi", "psi", "chi")


@dataclass(frozen=True)
class Monomer:
    """A rigid monomer with its H-bond donor pair (D, H) and acceptor atom A."""

    name: str
    donor: int
    hydrogen: int
    acceptor: int

    @property
    def atoms(self) -> Atoms:
        return _monomer_atoms(self.name).copy()


@cache
def _monomer_atoms(name: str) -> Atoms:
    from ase.build import molecule

    if name == "formamide":
        from ase.collections import s22

        dimer = s22["Formamide_dimer"]
        atoms = dimer[:6]
    else:
        atoms = molecule(
            {"water": "H2O", "ammonia": "NH3", "methanol": "CH3OH", "formic_acid": "HCOOH"}[name]
        )
    atoms = Atoms(atoms.get_chemical_symbols(), atoms.positions)
    atoms.positions -= atoms.get_center_of_mass()
    return atoms


# indices: G2 H2O (O H H), NH3 (N H H H), CH3OH (C O H_methyl H_hydroxyl H H),
# HCOOH (O_hydroxyl C O_carbonyl H_hydroxyl H_formyl), S22 formamide (C O N H H H)
MONOMERS: dict[str, Monomer] = {
    "water": Monomer("water", donor=0, hydrogen=1, acceptor=0),
    "ammonia": Monomer("ammonia", donor=0, hydrogen=1, acceptor=0),
    "methanol": Monomer("methanol", donor=1, hydrogen=3, acceptor=1),
    "formic_acid": Monomer("formic_acid", donor=0, hydrogen=3, acceptor=2),
    "formamide": Monomer("formamide", donor=2, hydrogen=4, acceptor=1),
}


@dataclass(frozen=True)
class DimerSpec:
    """A donor → acceptor pair and the start of its equilibrium search."""

    name: str
    donor: str
    acceptor: str
    guess: HBondCoords

    @property
    def n_donor(self) -> int:
        return len(_monomer_atoms(self.donor))


# starting points of the equilibrium search: typical H-bond lengths and the lone-pair
# directions (sp³ O: φ ≈ 55°, sp² O: ψ ≈ 60°, N of ammonia along its C₃ axis)
DIMERS: dict[str, DimerSpec] = {
    s.name: s
    for s in (
        DimerSpec("water_dimer", "water", "water", HBondCoords(2.91, 175, 0, 55, 0, 90)),
        DimerSpec("water_methanol", "water", "methanol", HBondCoords(2.90, 175, 0, 55, 0, 90)),
        DimerSpec("water_ammonia", "water", "ammonia", HBondCoords(2.98, 175, 0, 0, 0, 0)),
        DimerSpec("methanol_dimer", "methanol", "methanol", HBondCoords(2.90, 175, 0, 55, 0, 90)),
        DimerSpec("formamide_dimer", "formamide", "formamide", HBondCoords(2.95, 170, 0, 0, 60, 0)),
        DimerSpec(
            "formic_acid_dimer", "formic_acid", "formic_acid", HBondCoords(2.75, 175, 0, 0, 60, 0)
        ),
    )
}


def get_dimer(name: str) -> DimerSpec:
    """The :class:`DimerSpec` called ``name`` (an error lists the known ones)."""
    try:
        return DIMERS[name]
    except KeyError:
        raise InputError(f"unknown dimer {name!r}; choose one of {sorted(DIMERS)}") from None


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    if n < 1e-10:
        raise InputError("degenerate frame: a direction of zero length")
    return v / n


def _rotate(v: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` (…, 3) about unit ``axis`` by ``deg`` degrees."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return v * c + np.cross(axis, v) * s + np.outer(v @ axis, axis).reshape(v.shape) * (1 - c)


def _neighbours(atoms: Atoms) -> list[list[int]]:
    from nnp_lab.apps.hbond.geometry import covalent_neighbours

    return covalent_neighbours(atoms)


def _plane_normal(pos: np.ndarray, centre: int, nb: list[list[int]]) -> np.ndarray:
    first = nb[centre]
    if len(first) >= 2:
        u, v = pos[first[0]] - pos[centre], pos[first[1]] - pos[centre]
    elif len(first) == 1:
        x = first[0]
        other = [y for y in nb[x] if y != centre]
        if not other:
            raise InputError("an acceptor with a single neighbour needs a second-shell atom")
        u, v = pos[x] - pos[centre], pos[other[0]] - pos[x]
    else:
        raise InputError("the acceptor has no covalent neighbours: no local frame")
    return _unit(np.cross(u, v))


def _frame(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Orthonormal rows (first, second ⊥ first, their cross)."""
    e1 = _unit(first)
    e2 = _unit(second - (second @ e1) * e1)
    return np.stack([e1, e2, np.cross(e1, e2)])


def build_dimer(spec: DimerSpec | str, coords: HBondCoords) -> Atoms:
    """The dimer at ``coords``: donor atoms first, then the acceptor monomer.

    ``atoms.info`` holds ``dimer``, ``n_donor`` (atoms of the donor monomer) and the six
    coordinates.
    """
    spec = get_dimer(spec) if isinstance(spec, str) else spec
    if not 1.5 <= coords.r_da <= 20.0:
        raise InputError(f"r_da must be within 1.5–20 Å, got {coords.r_da}")
    if not 90.0 <= coords.theta <= 180.0:
        raise InputError(f"theta (D–H···A) must be within 90–180°, got {coords.theta}")
    dm, am = MONOMERS[spec.donor], MONOMERS[spec.acceptor]
    don, acc = dm.atoms, am.atoms
    pd, pa = don.positions, acc.positions
    d, h = pd[dm.donor], pd[dm.hydrogen]
    e = _unit(h - d)
    nb_d = _neighbours(don)
    others = [k for k in nb_d[dm.donor] if k != dm.hydrogen]
    ref = pd[others[0]] - d if others else np.array([0.0, 0.0, 1.0])
    if abs(_unit(ref) @ e) > 0.999:
        ref = np.array([1.0, 0.0, 0.0]) if abs(e[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    n0 = _unit(np.cross(e, ref))  # normal of the donor plane through D–H
    n = _rotate(n0, e, coords.omega)
    m = np.cross(n, e)  # bend direction, ⊥ D–H, in the bend plane
    r_dh = float(np.linalg.norm(h - d))
    th = math.radians(coords.theta)
    r = coords.r_da
    disc = r * r - (r_dh * math.sin(th)) ** 2
    r_ha = r_dh * math.cos(th) + math.sqrt(max(disc, 0.0))
    alpha = math.asin(min(1.0, r_ha * math.sin(th) / r))
    a_pos = d + r * (math.cos(alpha) * e + math.sin(alpha) * m)
    # acceptor frame and its receiving direction
    nb_a = _neighbours(acc)
    ac = pa[am.acceptor]
    b = _unit(ac - pa[nb_a[am.acceptor]].mean(axis=0))
    p = _plane_normal(pa, am.acceptor, nb_a)
    p = _unit(p - (p @ b) * b)
    lp = _rotate(b, p, coords.psi)
    cf, sf = math.cos(math.radians(coords.phi)), math.sin(math.radians(coords.phi))
    lp, p = cf * lp + sf * p, cf * p - sf * lp  # tilt out of plane; p stays ⊥ lp
    target = _unit(h - a_pos)
    spin = _rotate(n, target, coords.chi)
    rot = _frame(target, spin).T @ _frame(lp, p)  # maps the acceptor frame onto the target
    new_a = (pa - ac) @ rot.T + a_pos
    atoms = Atoms(don.get_chemical_symbols() + acc.get_chemical_symbols(), np.vstack([pd, new_a]))
    atoms.info.update({"dimer": spec.name, "n_donor": len(don), **coords.as_dict()})
    return atoms


def monomers_of(dimer: Atoms) -> tuple[Atoms, Atoms]:
    """The two monomers of a dimer (positions as in the dimer)."""
    n = int(dimer.info.get("n_donor", 0))
    if not 0 < n < len(dimer):
        raise InputError("the dimer needs info['n_donor'] (atoms of the first monomer)")
    a, b = dimer[:n], dimer[n:]
    for x in (a, b):
        x.info = {}
        x.calc = None
    return a, b


def monomer_key(atoms: Atoms, decimals: int = 5) -> bytes:
    """Identity of a rigid monomer up to rotation and translation (elements + all
    interatomic distances, rounded): equal for every placement of the same monomer."""
    d = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
    return atoms.numbers.tobytes() + np.round(d, decimals).tobytes()


def min_contact(dimer: Atoms) -> tuple[float, float]:
    """Closest intermolecular (any pair, heavy–heavy) distances (Å)."""
    n = int(dimer.info["n_donor"])
    pos = dimer.positions
    d = np.linalg.norm(pos[:n, None] - pos[None, n:], axis=-1)
    heavy = dimer.numbers > 1
    hh = d[np.ix_(heavy[:n], heavy[n:])]
    return float(d.min()), float(hh.min()) if hh.size else math.inf


def is_clash(dimer: Atoms, min_any: float = 1.45, min_heavy: float = 2.3) -> bool:
    """Whether two atoms of different monomers are unphysically close."""
    a, hh = min_contact(dimer)
    return a < min_any or hh < min_heavy


# ---------------------------------------------------------------------------- scans
@dataclass(frozen=True)
class ScanPoint:
    """One point of a scan: its family (``r``, ``theta``, ``phi``, ``psi``, ``chi``,
    ``random``, ``map``) and coordinates."""

    family: str
    coords: HBondCoords


def scan_points(
    eq: HBondCoords,
    n_random: int = 40,
    seed: int = 0,
    map_r: tuple[float, ...] = (),
    map_theta: tuple[float, ...] = (),
    n_far: int = 0,
) -> list[ScanPoint]:
    """Systematic scans around ``eq`` plus random rigid-body samples.

    - ``r``: D···A from eq − 0.4 Å to eq + 4.5 Å (17 points; the long end is the decay);
    - ``theta``: D–H···A 180° → 105° in 15° steps, bent two ways (ω₀, ω₀ + 90°), at eq and
      eq + 0.4 Å;
    - ``phi`` (acceptor out-of-plane, −90°…90°), ``psi`` (in-plane, −90°…90°), ``chi``
      (spin about the H-bond, 0…315°) at eq;
    - ``random``: every coordinate drawn (r_da ∈ [eq − 0.3, eq + 1.5] Å, cos θ uniform on
      θ ∈ [100°, 180°], angles uniform);
    - ``map``: the grid ``map_r`` × ``map_theta`` (other coordinates at eq);
    - ``far``: ``n_far`` random orientations at r_da ∈ [eq + 1, eq + 5] Å (the decay).
    Clashing geometries are dropped (see :func:`is_clash`, checked by the caller).
    """
    pts: list[ScanPoint] = []
    for dr in (-0.4, -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4.5):
        pts.append(ScanPoint("r", replace(eq, r_da=eq.r_da + dr)))
    for r in (eq.r_da, eq.r_da + 0.4):
        for om in (eq.omega, eq.omega + 90.0):
            for th in (180.0, 165.0, 150.0, 135.0, 120.0, 105.0):
                pts.append(ScanPoint("theta", replace(eq, r_da=r, theta=th, omega=om)))
    for ph in np.linspace(-90, 90, 9):
        pts.append(ScanPoint("phi", replace(eq, phi=float(ph))))
    for ps in np.linspace(-90, 90, 7):
        pts.append(ScanPoint("psi", replace(eq, psi=float(ps))))
    for ch in np.arange(0, 360, 45):
        pts.append(ScanPoint("chi", replace(eq, chi=float(ch))))
    for r in map_r:
        for th in map_theta:
            pts.append(ScanPoint("map", replace(eq, r_da=float(r), theta=float(th))))
    rng = np.random.default_rng(seed)
    c_lo = math.cos(math.radians(80.0))  # bend 180° − θ up to 80°, uniform in solid angle
    for k in range(n_random + n_far):
        c = rng.uniform(c_lo, 1.0)
        lo, hi = (eq.r_da - 0.3, eq.r_da + 1.5) if k < n_random else (eq.r_da + 1, eq.r_da + 5)
        pts.append(
            ScanPoint(
                "random" if k < n_random else "far",
                HBondCoords(
                    r_da=float(rng.uniform(lo, hi)),
                    theta=float(180.0 - math.degrees(math.acos(c))),
                    omega=float(rng.uniform(0, 360)),
                    phi=float(rng.uniform(-90, 90)),
                    psi=float(rng.uniform(-90, 90)),
                    chi=float(rng.uniform(0, 360)),
                ),
            )
        )
    return pts
