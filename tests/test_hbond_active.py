"""Query-by-committee choice of new dimer placements (no labelling: see test_hbond_dimers)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from nnp_lab.apps.hbond.active_scan import spread_selection
from nnp_lab.apps.hbond.dimer_data import load_scan, random_candidates
from nnp_lab.apps.hbond.model import held_out_split, interaction_energies
from nnp_lab.apps.hbond.train import RESOURCES
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee


def _at(x: float) -> Atoms:
    return Atoms("H2", positions=[[x, 0.0, 0.0], [x + 1.0, 0.0, 0.0]])


def test_spread_selection_rules():
    """Greedy by decreasing spread; above max_energy skipped; within min_separation of a
    chosen one skipped; too few eligible is a clear error."""
    cands = [_at(x) for x in (0.0, 0.1, 3.0, 6.0, 9.0)]
    mean = np.array([0.0, 0.0, 20.0, -1.0, -2.0])
    std = np.array([0.9, 0.8, 5.0, 0.5, 0.1])
    # 2 is too high in energy, 1 sits 0.1 Å from 0: the picks are 0, 3, 4 in that order
    assert spread_selection(cands, mean, std, 3).tolist() == [0, 3, 4]
    assert spread_selection(cands, mean, std, 2, min_separation=0.05).tolist() == [0, 1]
    assert spread_selection(cands, mean, std, 1, max_energy=30.0).tolist() == [2]
    with pytest.raises(InputError, match="larger pool"):
        spread_selection(cands, mean, std, 4)
    with pytest.raises(InputError, match="one entry per candidate"):
        spread_selection(cands, mean[:2], std, 1)


def test_spread_ranks_real_placements_with_the_shipped_committee():
    """On a pool of water–ammonia placements the chosen ones carry the largest spreads of
    the eligible candidates: every eligible candidate left out either has a lower spread
    than the last pick or sits within min_separation of a pick."""
    scan = load_scan(RESOURCES / "water_ammonia.nc")
    cands = random_candidates(scan, 60, seed=123)
    pred = interaction_energies(Committee.load(RESOURCES / "hbond_committee.pt"), cands)
    pick = spread_selection(cands, pred["mean"], pred["std"], 5)
    assert (pred["mean"][pick] <= 5.0).all()
    assert np.all(np.diff(pred["std"][pick]) <= 0)
    pos = np.stack([c.positions for c in cands])
    last = pred["std"][pick[-1]]
    for k in set(range(len(cands))) - set(pick.tolist()):
        if pred["mean"][k] <= 5.0 and pred["std"][k] > last:
            rms = np.sqrt(((pos[pick] - pos[k]) ** 2).sum(-1).mean(-1))
            assert rms.min() < 0.5
    with pytest.raises(InputError, match="seed 0 was already used"):
        random_candidates(scan, 5, seed=0)


def test_active_points_always_train_and_leave_the_random_split_alone():
    """Adding active points to a dimer changes neither its test nor its val points."""
    names = np.array(["a"] * 40 + ["b"] * 20)
    base = held_out_split(names)
    grown = np.concatenate([names, ["a"] * 10])
    fams = np.array(["random"] * 60 + ["active"] * 10)
    split = held_out_split(grown, families=fams)
    np.testing.assert_array_equal(split[:60], base)
    assert (split[60:] == "train").all()
    with pytest.raises(InputError, match="one entry"):
        held_out_split(names, families=fams)
