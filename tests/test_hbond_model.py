"""The H-bond interaction model: held-out accuracy, consistency, decay, symmetry, maps."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from nnp_lab.apps.hbond.dimer_data import KCAL, cheap_points, load_scan
from nnp_lab.apps.hbond.dimers import DIMERS, build_dimer, min_contact
from nnp_lab.apps.hbond.maps import directional_cut, energy_map, equilibrium_of
from nnp_lab.apps.hbond.model import (
    _features,
    _interaction,
    held_out_split,
    interaction_energies,
    labelled,
    point_families,
    train_interaction_committee,
    training_points,
)
from nnp_lab.apps.hbond.train import RESOURCES, scan_paths
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee

MODEL = RESOURCES / "hbond_committee.pt"


@pytest.fixture(scope="module")
def model() -> Committee:
    return Committee.load(MODEL)


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(MODEL.with_suffix(".json").read_text())


def test_held_out_mae_per_dimer(model, report):
    """Mean absolute error on the held-out (test) points of every dimer against its own
    reference level (DF-MP2/aug-cc-pVTZ-CP), recomputed here from the shipped model and
    scans: within the issue's 0.2 kcal/mol for each dimer (measured 0.130 water dimer,
    0.159 water–ammonia, 0.131 water–methanol, 0.174 methanol dimer, 0.182 formic acid
    dimer, 0.158 formamide dimer), the report's numbers, and better than GFN2-xTB on the
    same points."""
    scans = [load_scan(p) for p in scan_paths(RESOURCES)]
    dimers, e, names = training_points(scans)
    split = held_out_split(names, families=point_families(scans))
    pred = interaction_energies(model, dimers)["mean"]
    xtb = np.concatenate([s["e_int_xtb"].values[labelled(s)] for s in scans])
    test = split == "test"
    for name in sorted(set(names)):
        sel = test & (names == name)
        mae = float(np.mean(np.abs(pred[sel] - e[sel])))
        mae_xtb = float(np.mean(np.abs(xtb[sel] - e[sel])))
        assert mae == pytest.approx(report["test_mae_kcal_mol"][name]["mae_model"], abs=1e-3)
        assert mae <= 0.2, name
        assert mae < mae_xtb, name


def test_committee_path_equals_training_path(model):
    """The interaction energy the model is trained on (precomputed descriptors, distinct
    monomers once) is the one it predicts through the committee's forward pass (1e-4
    kcal/mol: float32 networks)."""
    scan = load_scan(RESOURCES / "water_dimer.nc")
    dimers, _, _ = training_points([scan])
    dimers = dimers[:20]
    via_committee = interaction_energies(model, dimers)["members"]
    feats = _features(model.members[0], dimers)
    for k, pot in enumerate(model.members):
        direct = _interaction(pot, feats).detach().numpy() / KCAL
        np.testing.assert_allclose(direct, via_committee[k], atol=1e-4)


SHIPPED = {p.stem for p in scan_paths(RESOURCES)}
HOMODIMERS = sorted(n for n in SHIPPED if DIMERS[n].donor == DIMERS[n].acceptor)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_interaction_vanishes_smoothly_beyond_the_cutoff(model, name):
    """Pulling a dimer apart along R_DA (5 → 11 Å in 0.01 Å steps): once every
    intermolecular distance exceeds the 8 Å descriptor cutoff the interaction is ≤ 0.01
    kcal/mol (the issue's bound; it is zero to round-off: the atomic environments are the
    monomers'); on the way there it has no jumps — the steepest 0.01 Å step, redone in
    0.001 Å steps, changes by about a tenth as much (bound 0.2: a jump would not shrink) —
    its slope stays below 8 kcal/mol/Å (measured 1.2–2.4; the earlier five-dimer
    committee had 5.9 on water→ammonia)."""
    spec = DIMERS[name]
    eq = equilibrium_of(load_scan(RESOURCES / f"{name}.nc"))
    r = np.arange(5.0, 11.0, 0.01)
    dimers = [build_dimer(spec, replace(eq, r_da=float(x))) for x in r]
    e = interaction_energies(model, dimers)["mean"]
    contact = np.array([min_contact(d)[0] for d in dimers])
    beyond = contact > 8.0
    assert beyond.sum() > 100
    assert np.abs(e[beyond]).max() <= 0.01
    steps = np.abs(np.diff(e))
    assert steps.max() < 0.08
    k = int(steps.argmax())
    fine = [build_dimer(spec, replace(eq, r_da=float(r[k] + x))) for x in (0.0, 0.001)]
    e_fine = interaction_energies(model, fine)["mean"]
    assert abs(e_fine[1] - e_fine[0]) < 0.2 * steps[k]


@pytest.mark.parametrize("name", ["water_dimer", "water_ammonia"])
def test_tail_beyond_7_angstrom_is_weak(model, name):
    """Along R_DA from 7 Å outwards the water dimer and water→ammonia interactions are
    weak: |E| < 0.5 kcal/mol (the stored MP2 points are −0.20 and −0.26 kcal/mol at
    7.34 and 7.36 Å; dipole–dipole estimates at 7 Å are −0.1 to −0.25; the formamide
    dimer's 3.7 D monomers reach ≈ 0.6 there, so the bound is not applied to it). Measured
    0.26 (water dimer) and 0.31 (water→ammonia) with 40 `far` reference points per dimer
    in training; without them water→ammonia bulged to 0.53 between the stored points."""
    spec = DIMERS[name]
    eq = equilibrium_of(load_scan(RESOURCES / f"{name}.nc"))
    r = np.arange(7.0, 11.0, 0.01)
    e = interaction_energies(model, [build_dimer(spec, replace(eq, r_da=float(x))) for x in r])
    assert np.abs(e["mean"]).max() < 0.5


@pytest.mark.parametrize("name", HOMODIMERS)
def test_swapping_identical_monomers_leaves_the_interaction_unchanged(model, name):
    """E(AB) − E(A) − E(B) for identical monomers is symmetric: listing the acceptor first
    gives the same model energy (1e-4 kcal/mol, float32), for every shipped homodimer."""
    spec = DIMERS[name]
    atoms = build_dimer(spec, equilibrium_of(load_scan(RESOURCES / f"{name}.nc")))
    n = spec.n_donor
    swapped = atoms[n:] + atoms[:n]
    swapped.info["n_donor"] = len(atoms) - n
    e = interaction_energies(model, [atoms, swapped])["mean"]
    assert e[0] == pytest.approx(e[1], abs=1e-4)
    assert e[0] < -2.0


def test_energy_map_shows_the_directional_hbond(model):
    """The water dimer's (R_DA, θ) map for reference, NNP and xTB: at R_DA = 2.8 Å bending
    the O–H···O from 180° to 120° costs the reference more than 1 kcal/mol (the
    directional H-bond), and the NNP follows the reference within 0.5 kcal/mol over the
    map's attractive part; the committee spread is reported everywhere."""
    emap = energy_map(load_scan(RESOURCES / "water_dimer.nc"), model)
    assert {"e_ref", "e_nnp", "e_nnp_std", "e_xtb", "d_nnp", "d_xtb"} <= set(emap.data_vars)
    cut = directional_cut(emap, 2.8)
    assert float(cut.e_ref.sel(theta=120.0) - cut.e_ref.sel(theta=180.0)) > 1.0
    assert float(cut.e_nnp.sel(theta=120.0) - cut.e_nnp.sel(theta=180.0)) > 1.0
    attractive = emap.e_ref < 0
    assert float(np.abs(emap.d_nnp.where(attractive)).max()) < 0.5
    assert np.isfinite(emap.e_nnp_std.values[np.isfinite(emap.e_nnp.values)]).all()
    three = energy_map(
        load_scan(RESOURCES / "water_dimer.nc"),
        model,
        r_da=[2.8, 3.2],
        theta=[180.0, 150.0],
        phi=[0.0, 55.0],
    )
    assert three.e_nnp.dims == ("r_da", "theta", "phi")


@pytest.mark.parametrize("residual", [None, [8, 4]])
def test_training_fits_and_generalises_on_a_small_run(residual):
    """A 2-member committee trained in seconds (xTB pretraining on 300 points, then the
    water-dimer reference, either fine-tuning the pretrained network or fitting a frozen
    network's residual with a small correction network summed into it) beats the
    untrained spread by far and gives every member its report; the split is per dimer
    and reproducible."""
    scan = load_scan(RESOURCES / "water_dimer.nc")
    dimers, e, names = training_points([scan])
    split = held_out_split(names)
    assert (split == held_out_split(names)).all()
    assert set(split) == {"train", "val", "test"}
    spec = DIMERS["water_dimer"]
    pre = cheap_points(spec, equilibrium_of(scan), n_random=300)
    com, rep = train_interaction_committee(
        dimers,
        e,
        split,
        {
            "members": 2,
            "pretrain_epochs": 15,
            "epochs": 60,
            "patience": 30,
            "residual_hidden": residual,
        },
        pretrain=pre,
    )
    widths = [64, 32] if residual is None else [64 + 8, 32 + 4]
    assert all(m.config.hidden == widths for m in com.members)
    assert len(rep["members"]) == 2 and all("pretrain_epochs" in m for m in rep["members"])
    pred = interaction_energies(com, dimers)["mean"]
    test = split == "test"
    assert np.mean(np.abs(pred[test] - e[test])) < 0.3 * np.mean(np.abs(e[test] - e.mean()))


def test_residual_network_must_match_the_depth():
    """The correction network is summed layer by layer into the pretrained one, so the
    depth must match and pretraining must be given."""
    from pydantic import ValidationError

    from nnp_lab.apps.hbond.model import InteractionTrainConfig

    with pytest.raises(ValidationError, match="as many layers"):
        InteractionTrainConfig(hidden=[64, 32], residual_hidden=[8])
    assert InteractionTrainConfig(residual_hidden=[16, 8]).residual_hidden == [16, 8]
    # ... and needs the pretrained network it corrects
    dimers, e, names = training_points([load_scan(RESOURCES / "water_dimer.nc")])
    with pytest.raises(InputError, match="pretrain"):
        train_interaction_committee(
            dimers, e, held_out_split(names), {"residual_hidden": [8, 4]}, pretrain=None
        )


def test_pretraining_count_per_dimer(tmp_path):
    """``--pretrain-for DIMER=N`` gives one dimer its own number of xTB placements (the
    formamide dimer's 6D xTB surface needs more than the water dimer's); the report
    records the counts, and names or counts that cannot be used are refused."""
    from nnp_lab.apps.hbond.train import _counts, train

    water = [RESOURCES / "water_dimer.nc"]
    tiny = {"members": 1, "pretrain_epochs": 1, "epochs": 1, "hidden": [4, 4]}
    small = train(water, tmp_path / "a.pt", tiny, n_pretrain=30)
    more = train(water, tmp_path / "b.pt", tiny, n_pretrain=30, pretrain_for={"water_dimer": 90})
    # random placements plus a third as many far ones, less the few that clash
    assert 70 <= more["pretrain_points"] - small["pretrain_points"] <= 80
    assert more["pretrain_rule"].endswith("; water_dimer: 90")
    assert (tmp_path / "b.json").exists()
    assert _counts(["formamide_dimer=6000", "water_dimer = 10"]) == {
        "formamide_dimer": 6000,
        "water_dimer": 10,
    }
    with pytest.raises(InputError, match="DIMER=N"):
        _counts(["formamide_dimer:6000"])
    with pytest.raises(InputError, match="not among the scans"):
        train(water, tmp_path / "c.pt", tiny, pretrain_for={"formamide_dimer": 100})
    with pytest.raises(InputError, match="positive"):
        train(water, tmp_path / "c.pt", tiny, pretrain_for={"water_dimer": 0})
