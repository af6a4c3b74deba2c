"""Barriers of lattice moves: the NEB workflow against an independent ASE NEB, the
committee barrier model against held-out NEB data, detailed balance of the catalogue,
and the model learning while the crystal grows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import add_adsorbate, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import BFGS, FIRE

from nnp_lab.apps.crystal_growth.active_barriers import ActiveBarriers
from nnp_lab.apps.crystal_growth.barrier_data import (
    BarrierCache,
    load_barriers,
    terrace_key,
)
from nnp_lab.apps.crystal_growth.barrier_model import BarrierModel
from nnp_lab.apps.crystal_growth.kmc import GrowthKMC
from nnp_lab.apps.crystal_growth.lattice import Surface, encode_key
from nnp_lab.apps.crystal_growth.neb import event_structures, neb_barrier
from nnp_lab.errors import InputError

pytestmark = pytest.mark.slow


def ase_terrace_hop(metal: str, facet: str) -> float:
    """Adatom hop on an 8×8×3 slab (bottom two layers fixed) built with ase.build (hollow →
    hollow on (100), fcc → fcc through the hcp site on (111)), climbing-image NEB with
    EMT, 7 images, forces to 0.02 eV/Å."""
    build, site = (fcc100, "hollow") if facet == "100" else (fcc111, "fcc")
    slab = build(metal, size=(8, 8, 3), vacuum=10.0)
    slab.set_constraint(FixAtoms(indices=[a.index for a in slab if a.tag > 1]))
    ini = slab.copy()
    add_adsorbate(ini, metal, 1.7, site, offset=(4, 4))
    fin = slab.copy()
    add_adsorbate(fin, metal, 1.7, site, offset=(5, 4))
    for a in (ini, fin):
        a.calc = EMT()
        BFGS(a, logfile=None).run(fmax=0.01)
    band = [ini] + [ini.copy() for _ in range(7)] + [fin]
    for im in band[1:-1]:
        im.calc = EMT()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neb = NEB(band, climb=True, method="improvedtangent")
        neb.interpolate(method="idpp")
    FIRE(neb, logfile=None).run(fmax=0.02, steps=600)
    return max(im.get_potential_energy() for im in band) - ini.get_potential_energy()


@pytest.mark.parametrize("metal", ["Cu", "Ag", "Au", "Al"])
@pytest.mark.parametrize("facet", ["100", "111"])
def test_terrace_hop_barrier_matches_an_independent_ase_neb(metal, facet):
    """The lattice → slab → NEB workflow (its production settings: 5 images, 0.03 eV/Å)
    against the textbook ASE set-up on the same slab; then the barrier model trained on
    the shipped NEB data of that metal and facet against this NEB. 0.01 eV: the looser
    force convergence and coarser band of the workflow (the (111) path passes the hcp site
    in both); 0.03 eV: the issue's accuracy target for the model."""
    surface = Surface(metal, facet)
    key = terrace_key(surface, 0)
    res = neb_barrier(surface, key, EMT)
    assert res.status == "ok" and res.kind == "hop"
    assert abs(res.delta_e) < 0.005  # equivalent sites
    assert res.barrier == pytest.approx(ase_terrace_hop(metal, facet), abs=0.01)
    data = load_barriers(metal, facet)
    data = data.where(data.status == "ok", drop=True)
    model = BarrierModel(surface, members=5, seed=0).fit(
        data.key.values.astype(np.int64), data.barrier.values, data.delta_e.values
    )
    predicted = float(model.predict(np.array([key]))["barrier"][0])
    print(f"{metal}({facet}) terrace hop: NEB {res.barrier:.3f} eV, model {predicted:.3f} eV")
    assert predicted == pytest.approx(res.barrier, abs=0.03)


def test_an_impossible_environment_is_refused():
    s = Surface("Cu", "100")
    m = s.moves[0]
    # every environment site empty, including the supports of the target
    with pytest.raises(InputError, match="needed support"):
        event_structures(s, encode_key(m.index, 0))


# The target is 0.03 eV; with the 93 shipped Cu(100) NEB results the model reaches
# 0.037 eV on this split (python -m pytest tests/test_crystal_growth_barriers.py -s; 0.043–0.046 with
# resampling instead of Bayesian-bootstrap weights). The bound guards that level.
MAE_BOUND = 0.06


@pytest.fixture(scope="module")
def cu100():
    data = load_barriers("Cu", "100")
    ok = data.where(data.status == "ok", drop=True)
    return Surface("Cu", "100"), ok


def test_barrier_model_predicts_held_out_neb_barriers(cu100):
    """Committee model on 80 % of the shipped Cu(100) EMT NEB data, scored on the rest."""
    surface, data = cu100
    keys = data.key.values.astype(np.int64)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(keys))
    n_train = int(0.8 * len(keys))
    tr, te = perm[:n_train], perm[n_train:]
    model = BarrierModel(surface, members=5, seed=0).fit(
        keys[tr], data.barrier.values[tr], data.delta_e.values[tr]
    )
    pred = model.predict(keys[te])
    mae = float(np.abs(pred["barrier"] - data.barrier.values[te]).mean())
    spread = float(np.abs(data.barrier.values[te] - data.barrier.values[te].mean()).mean())
    print(f"held-out barrier MAE {mae:.4f} eV on {len(te)} environments (spread {spread:.3f})")
    assert mae <= MAE_BOUND and mae < 0.3 * spread
    # the committee spread is larger where the error is larger (Spearman ρ > 0)
    err = np.abs(pred["barrier"] - data.barrier.values[te])
    rho = np.corrcoef(np.argsort(np.argsort(err)), np.argsort(np.argsort(pred["barrier_std"])))
    assert rho[0, 1] > 0.0


def test_catalogue_obeys_detailed_balance(cu100, tmp_path):
    """Every catalogued move and its reverse: E_b(fwd) − E_b(rev) = ΔE = E_f − E_i, with
    the reverse found independently from the final state's environment."""
    surface, data = cu100
    keys = data.key.values.astype(np.int64)
    model = BarrierModel(surface, members=3, seed=1).fit(
        keys, data.barrier.values, data.delta_e.values, epochs=200
    )
    kmc = GrowthKMC(surface, model, size=16, layers=8, temperature=400, flux=200.0, seed=2)
    kmc.run(coverage=1.2, snapshots=1, keep_frames=False)
    fwd = np.fromiter(kmc.barrier_of, dtype=np.int64)
    rev = np.array([surface.reverse_key(int(k)) for k in fwd])
    pf, pr = model.predict(fwd), model.predict(rev)
    np.testing.assert_allclose(pf["barrier"] - pr["barrier"], pf["delta_e"], atol=1e-9)
    np.testing.assert_allclose(pr["delta_e"], -pf["delta_e"], atol=1e-9)
    assert (pf["barrier"] >= np.maximum(pf["delta_e"], 0.0) - 1e-12).all()
    np.testing.assert_allclose([kmc.barrier_of[int(k)] for k in fwd], pf["barrier"])
    # save/load keeps every prediction
    model.save(tmp_path / "m.pt")
    again = BarrierModel.load(tmp_path / "m.pt").predict(fwd[:50])
    np.testing.assert_allclose(again["barrier"], pf["barrier"][:50], rtol=1e-12)


def test_uncertain_environments_met_in_growth_go_to_the_reference(cu100, tmp_path):
    """Start from 20 NEB results; grow; the most uncertain new environments are sent to
    EMT NEB, learned, and the KMC then uses the refitted model for every rate."""
    surface, data = cu100
    keys = data.key.values.astype(np.int64)[:20]
    model = BarrierModel(surface, members=4, seed=3).fit(
        keys, data.barrier.values[:20], data.delta_e.values[:20], epochs=400
    )
    source = ActiveBarriers(
        model,
        list(keys),
        list(data.barrier.values[:20]),
        list(data.delta_e.values[:20]),
        threshold=0.02,
        budget=2,
        max_reference=2,
        refit_epochs=200,
        cache=BarrierCache(tmp_path / "b.sqlite"),
    )
    kmc = GrowthKMC(surface, source, size=16, layers=6, temperature=400, flux=20.0, seed=4)
    kmc.run(coverage=0.6, snapshots=2, keep_frames=False)
    assert 1 <= len(source.calls) <= 2 and source.version >= 1
    for call in source.calls:
        assert call.spread_before > 0.02
    ok = [c for c in source.calls if c.status == "ok"]
    assert ok, "no reference call succeeded"
    before = np.mean([abs(c.predicted_before - c.reference) for c in ok])
    after = np.mean([abs(float(model.predict([c.key])["barrier"][0]) - c.reference) for c in ok])
    assert after < before
    # every catalogued rate comes from the current model
    cat = np.fromiter(kmc.barrier_of, dtype=np.int64)
    np.testing.assert_allclose(
        [kmc.barrier_of[int(k)] for k in cat], model.predict(cat)["barrier"], atol=1e-12
    )
