"""Liquid-water analysis against analytic results: box density, RDF normalisation and
coordination shells, the H-bond criterion against a brute-force search, population
correlation functions of a two-state Markov process."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from nnp_lab.apps.hbond.liquid_analysis import (
    hbond_pairs,
    lifetimes,
    population_correlations,
    rdf,
    rdf_features,
    water_topology,
)
from nnp_lab.apps.hbond.water_box import box_length, water_box
from nnp_lab.errors import InputError


# ---------------------------------------------------------------------------- water box
def test_water_box_density_and_contacts():
    a = water_box(64, density=1.0, seed=3)
    # mass / volume in g/cm³ (ASE masses in amu; 1 amu = 1.66053907e-24 g)
    rho = a.get_masses().sum() * 1.66053906660e-24 / (a.get_volume() * 1e-24)
    assert rho == pytest.approx(1.0, rel=2e-4)  # ASE's H/O masses vs the 18.01528 g/mol used
    assert np.allclose(a.cell.lengths(), box_length(64, 1.0))
    # every molecule intact and intermolecular contacts above the packing limits
    h_of_o = water_topology(a.numbers, a.positions, a.cell.array)
    assert h_of_o.shape == (64, 2)
    d = a.get_all_distances(mic=True)
    mol = np.repeat(np.arange(64), 3)
    inter = mol[:, None] != mol[None, :]
    oo = (a.numbers[:, None] == 8) & (a.numbers[None, :] == 8) & inter
    assert d[oo].min() >= 2.4 - 1e-9
    assert d[inter].min() >= 1.3 - 1e-9


def test_water_box_bad_input():
    with pytest.raises(InputError, match="density"):
        water_box(10, density=5.0)
    with pytest.raises(InputError, match="at least one"):
        water_box(0)
    with pytest.raises(InputError, match="lower the density"):
        water_box(32, density=1.9, max_attempts=20, max_restarts=1)


# ---------------------------------------------------------------------------- RDF
def test_rdf_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    box = 20.0
    pos = rng.uniform(0, box, size=(6, 2000, 3))
    g = rdf(pos, np.eye(3) * box, bin_width=0.25)
    sel = g["g"].sel(r=slice(2.0, 9.9))
    # Poisson counts: ~ 6·2000·ρ·4πr²dr ≥ 3e4 per bin at r ≥ 2 Å → relative noise ≤ 0.6 %
    assert abs(float(sel.mean()) - 1.0) < 0.01
    assert float(abs(sel - 1.0).max()) < 0.05


def test_rdf_fcc_shells():
    a0 = 3.6
    cu = bulk("Cu", "fcc", a=a0, cubic=True).repeat(5)
    g = rdf(cu.positions, cu.cell.array, bin_width=0.01)
    n = g["n"]
    # fcc: 12 neighbours at a/√2, 6 more at a, 24 more at a·√(3/2)
    assert float(n.sel(r=a0 / np.sqrt(2) + 0.1, method="nearest")) == pytest.approx(12.0)
    assert float(n.sel(r=a0 + 0.1, method="nearest")) == pytest.approx(18.0)
    assert float(n.sel(r=a0 * np.sqrt(1.5) + 0.1, method="nearest")) == pytest.approx(42.0)
    assert float(n.sel(r=a0 / np.sqrt(2) - 0.1, method="nearest")) == 0.0


def test_rdf_features_water_like_shape():
    r = np.arange(0.01, 8.0, 0.02)
    gv = 1 + 1.6 * np.exp(-((r - 2.8) ** 2) / 0.02) - 0.4 * np.exp(-((r - 3.4) ** 2) / 0.05)
    gv[r < 2.4] = 0.0
    import xarray as xr

    g = xr.Dataset({"g": ("r", gv), "n": ("r", np.cumsum(gv))}, coords={"r": r})
    f = rdf_features(g)
    assert f["rdf_peak_r"] == pytest.approx(2.8, abs=0.011)
    assert f["rdf_peak_g"] == pytest.approx(2.6, abs=0.01)
    assert 3.3 < f["rdf_min_r"] < 3.5


# ---------------------------------------------------------------------------- H-bonds
def _brute_force(atoms: Atoms, r_max: float = 3.5, angle_max: float = 30.0) -> set:
    """Every (H, acceptor O) pair by the Luzar–Chandler criterion, all minimum images."""
    h_of_o = water_topology(atoms.numbers, atoms.positions, atoms.cell.array)
    o_idx = np.nonzero(atoms.numbers == 8)[0]
    out = set()
    for k, o in enumerate(o_idx):
        for h in h_of_o[k]:
            v_oh = atoms.get_distance(o, h, mic=True, vector=True)
            for a in o_idx:
                if a == o:
                    continue
                v_oo = atoms.get_distance(o, a, mic=True, vector=True)
                r = np.linalg.norm(v_oo)
                cos = v_oh @ v_oo / (np.linalg.norm(v_oh) * r)
                if r <= r_max and np.degrees(np.arccos(np.clip(cos, -1, 1))) <= angle_max:
                    out.add((int(h), int(a)))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_hbond_pairs_match_brute_force(seed):
    a = water_box(48, density=1.0, seed=seed)
    a.rattle(0.05, seed=seed)
    h_of_o = water_topology(a.numbers, a.positions, a.cell.array)
    o_idx = np.nonzero(a.numbers == 8)[0]
    fast = {tuple(map(int, p)) for p in hbond_pairs(a.positions, a.cell.array, o_idx, h_of_o)}
    slow = _brute_force(a)
    assert fast == slow
    assert len(slow) > 5  # random packings still make some bonds: the test sees both cases


def test_hbond_criterion_on_a_dimer():
    """Linear water dimer: one bond; the donor turned 35° about its O: none (> 30°)."""
    donor = molecule("H2O")
    v = donor.positions[1] - donor.positions[0]
    acc = molecule("H2O")
    acc.translate(donor.positions[0] + 2.9 * v / np.linalg.norm(v))
    dimer = donor + acc
    dimer.set_cell([15.0] * 3)
    dimer.pbc = True
    dimer.center()
    h_of_o = water_topology(dimer.numbers, dimer.positions, dimer.cell.array)
    o_idx = np.array([0, 3])
    pairs = hbond_pairs(dimer.positions, dimer.cell.array, o_idx, h_of_o)
    assert {tuple(map(int, p)) for p in pairs} == {(1, 3)}
    axis = np.cross(v, donor.positions[2] - donor.positions[0])
    turned = dimer.copy()
    sub = turned[:3]
    sub.rotate(35.0, axis, center=sub.positions[0])
    turned.positions[:3] = sub.positions
    assert len(hbond_pairs(turned.positions, turned.cell.array, o_idx, h_of_o)) == 0


def test_water_topology_rejects_non_water():
    a = molecule("CH4")
    a.set_cell([10.0] * 3)
    with pytest.raises(InputError, match="pure water"):
        water_topology(a.numbers, a.positions, a.cell.array)


# ---------------------------------------------------------------------------- lifetimes
def test_population_correlations_small_exact():
    h = np.array([[1, 1, 1, 0, 1, 1]], dtype=bool).T  # one pair, 6 frames
    c, s = population_correlations(h)
    # intermittent: Σ_t h(t)h(t+τ) / Σ_{t ≤ 5-τ} h(t)
    assert c[0] == 1.0
    assert c[1] == pytest.approx(3 / 4)  # pairs (0,1),(1,2),(4,5) over origins 0..4 (4 ones)
    assert c[2] == pytest.approx(2 / 3)  # (0,2),(2,4) over origins 0..3 (3 ones)
    # continuous: runs of 3 and 2 frames
    assert s[1] == pytest.approx(3 / 4)  # origins 0,1,4 stay bonded one frame
    assert s[2] == pytest.approx(1 / 3)  # origin 0 only, over origins 0..3
    assert s[3] == 0.0


def test_population_correlations_markov_chain():
    """Two-state Markov chain, breaking probability b and forming f per frame:
    S(τ) = (1 − b)^τ and C(τ) = p + (1 − p)(1 − b − f)^τ with p = f/(b + f)."""
    rng = np.random.default_rng(1)
    b, f, n_t, n_p = 0.1, 0.05, 400, 600
    p = f / (b + f)
    h = np.zeros((n_t, n_p), dtype=bool)
    h[0] = rng.random(n_p) < p
    for t in range(1, n_t):
        u = rng.random(n_p)
        h[t] = np.where(h[t - 1], u >= b, u < f)
    c, s = population_correlations(h, max_lag=40)
    tau = np.arange(41)
    # ~ 8e4 bonded origins: statistical errors ≲ 0.01 at these lags
    assert np.allclose(s, (1 - b) ** tau, atol=0.015)
    assert np.allclose(c, p + (1 - p) * (1 - b - f) ** tau, atol=0.02)
    life = lifetimes(c, s, dt_ps=0.01)
    # ∫ S dt ≈ Σ (1 − b)^τ dt − dt/2 = dt (1/b − 1/2) (trapezoid)
    assert life["tau_continuous_ps"] == pytest.approx(0.01 * (1 / b - 0.5), rel=0.05)
    # C = 1/e where (1 − p) λ^τ = e^{-1} − p
    lam = 1 - b - f
    tau_e = np.log((np.exp(-1) - p) / (1 - p)) / np.log(lam) * 0.01
    assert life["tau_intermittent_ps"] == pytest.approx(tau_e, rel=0.15)
