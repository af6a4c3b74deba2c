"""Growth lattice and kinetic Monte Carlo: geometry, invariants, detailed balance at zero
flux, and submonolayer nucleation scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.units import kB

from nnp_lab.apps.crystal_growth import kmc_kernels as K
from nnp_lab.apps.crystal_growth.bond_counting import BondCountingBarriers
from nnp_lab.apps.crystal_growth.kmc import GrowthKMC, island_sizes
from nnp_lab.apps.crystal_growth.lattice import Surface, decode_key, encode_key
from nnp_lab.errors import InputError


@pytest.mark.parametrize("facet", ["100", "111"])
def test_fcc_geometry(facet):
    s = Surface("Cu", facet)
    # fcc: 12 nearest neighbours at a/√2, as the bulk (ASE's Cu: a = 3.61 Å)
    pos = s.position(np.array(s.neighbours))
    assert len(s.neighbours) == 12
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1), s.a / math.sqrt(2), rtol=1e-12)
    assert len(s.down) == (4 if facet == "100" else 3) == len(s.up)
    # interlayer spacing of the (100)/(111) planes: a/2 and a/√3
    spacing = s.position((1, 0, 0))[2]
    assert spacing == pytest.approx(s.a / 2 if facet == "100" else s.a / math.sqrt(3))


@pytest.mark.parametrize("facet", ["100", "111"])
def test_moves_reverse_and_share_their_environment(facet):
    s = Surface("Ag", facet)
    rng = np.random.default_rng(0)
    for m in s.moves:
        r = s.moves[s.reverse[m.index]]
        assert r.target == tuple(-x for x in m.target) and s.reverse[r.index] == m.index
        # the environment of t → s, seen from s, is the same set of sites
        shifted = {tuple(np.add(o, m.target)) for o in r.environment}
        assert shifted == set(m.environment)
        for _ in range(5):
            key = encode_key(m.index, int(rng.integers(0, 2 ** len(m.environment))))
            back = s.reverse_key(key)
            assert decode_key(back)[0] == r.index and s.reverse_key(back) == key


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="not an fcc metal"):
        Surface("Fe", "100")
    with pytest.raises(InputError, match="facet"):
        Surface("Cu", "110")
    with pytest.raises(InputError, match="size"):
        GrowthKMC(Surface("Cu", "100"), BondCountingBarriers(), size=4)
    kmc = GrowthKMC(Surface("Cu", "100"), BondCountingBarriers(), size=10, layers=5)
    with pytest.raises(InputError, match="not supported"):
        kmc.place([(2, 0, 0)])


def test_random_numbers_are_uniform_and_reproducible():
    a, b = K.seed_state(7), K.seed_state(7)
    x = np.array([K.next_uniform(a) for _ in range(20000)])
    assert all(K.next_uniform(b) == v for v in x[:100])
    assert 0.0 < x.min() and x.max() < 1.0
    # mean and variance of U(0,1) within 4σ for n = 20000
    assert abs(x.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(x))
    assert abs(x.var() - 1 / 12) < 0.005


@pytest.mark.parametrize("facet", ["100", "111"])
def test_growth_keeps_the_support_rule_and_counts_atoms(facet):
    s = Surface("Cu", facet)
    kmc = GrowthKMC(
        s,
        BondCountingBarriers(e_d=0.45, e_n=0.2, e_es=0.1, e_x=0.8),
        size=24,
        layers=8,
        temperature=450,
        flux=10.0,
        seed=3,
    )
    out = kmc.run(coverage=1.2, snapshots=3)
    grid = kmc.grid
    assert grid[1:].sum() == kmc.counters[1]  # every deposited atom is on the lattice
    for z, i, j in np.argwhere(grid[1:]) + np.array([1, 0, 0]):
        assert K.supported(kmc.occ, z, i, j, kmc.size, kmc.layers, kmc.tables.down)
    # the rates held in the tree equal freshly computed ones
    tree_total = kmc.tree[1]
    kmc.refresh_all()
    assert kmc.tree[1] == pytest.approx(tree_total, rel=1e-9)
    assert out.coverage.values[-1] == pytest.approx(1.2, abs=1 / 24**2)
    assert int(out.event_counts.sel(event_kind="deposit")[-1]) == kmc.counters[1]
    assert int(out.event_counts.sel(event_kind="down")[-1]) > 0  # interlayer transport
    np.testing.assert_allclose(
        out.layer_coverage.isel(snapshot=-1).values[1:].sum(), 1.2, atol=1 / 24**2
    )


def test_two_adatoms_reach_the_boltzmann_bonded_fraction():
    """Zero flux, two adatoms on a periodic 8×8 (100) terrace, bond-counting barriers
    (E_b = E_d + n E_n, detailed balance with E = −E_n · bonds). The time-weighted
    fraction spent as a bonded pair must be 4 e^{βE_n} / (4 e^{βE_n} + L² − 5)
    (4 bonded relative positions of L² − 1). Tolerance 8 %: 3σ of the estimate from
    ~1500 independent bonded/unbonded periods."""
    L, T, e_n = 8, 300.0, 0.03
    kmc = GrowthKMC(
        Surface("Cu", "100"),
        BondCountingBarriers(e_d=0.1, e_n=e_n),
        size=L,
        layers=4,
        temperature=T,
        flux=0.0,
        seed=11,
    )
    kmc.place([(1, 0, 0), (1, 4, 4)])
    bonded_time = total = 0.0
    for _ in range(60000):
        layer = kmc.grid[1]
        (i1, j1), (i2, j2) = np.argwhere(layer)
        di, dj = (i1 - i2) % L, (j1 - j2) % L
        bonded = (min(di, L - di) + min(dj, L - dj)) == 1
        t0 = kmc.time
        kmc.advance(max_events=1)
        dt = kmc.time - t0
        total += dt
        bonded_time += dt * bonded
    w = 4 * math.exp(e_n / (kB * T))
    expected = w / (w + L * L - 5)
    assert bonded_time / total == pytest.approx(expected, rel=0.08)


def test_island_sizes_are_periodic():
    s = Surface("Cu", "100")
    layer = np.zeros((10, 10), dtype=np.uint8)
    layer[0, 3:6] = layer[9, 4] = 1  # wraps around i
    layer[5, 5] = 1
    assert sorted(island_sizes(layer, s)) == [1, 4]


@pytest.mark.slow
@pytest.mark.parametrize("facet", ["100", "111"])
def test_island_density_follows_nucleation_theory(facet):
    """Irreversible attachment (critical nucleus i* = 1): the island density at fixed
    coverage scales as (D/F)^(−χ), χ = i*/(i* + 2) = 1/3 (Venables; Amar, Family & Lam,
    PRB 50, 8781 (1994) found this with point-to-fractal islands). Fitted over two decades
    of D/F at 0.1 ML; ±0.05 as the issue asks (the statistical error of the fit with
    50–250 islands per point is ≈ 0.02)."""
    s, T, e_d = Surface("Cu", facet), 300.0, 0.4
    d = 1e12 * math.exp(-e_d / (kB * T))  # hop rate per direction
    ratios = np.array([1e5, 1e6, 1e7])
    density = []
    for r in ratios:
        kmc = GrowthKMC(
            s,
            BondCountingBarriers(e_d=e_d, irreversible=True),
            size=256,
            layers=5,
            temperature=T,
            flux=d / r,
            seed=int(np.log10(r)),
        )
        density.append(float(kmc.run(coverage=0.1, snapshots=1).island_density[-1]))
    chi = -np.polyfit(np.log(ratios), np.log(density), 1)[0]
    assert chi == pytest.approx(1 / 3, abs=0.05), (chi, density)
