"""Committee active learning: members, calibration, explorers, selection, the Dask oracle.

The reference is ASE's EMT (Cu) run on a real ``distributed.LocalCluster``; the loop tests
(end to end, killed and resumed, GFN2-xTB) are in ``test_active_loop.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT

from nnp_lab.active import (
    Calibration,
    CommitteeConfig,
    DaskOracle,
    ExploreConfig,
    calibrate,
    committee_predictions,
    explore,
    select_candidates,
    train_committee,
)
from nnp_lab.active.select import farthest_point_sampling, fingerprints
from nnp_lab.data import EMTLabeler, samplers
from nnp_lab.data.dataset import Dataset
from nnp_lab.data.labelers import Labeler, LabelResult
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee
from nnp_lab.models.descriptor import DescriptorConfig
from nnp_lab.models.potential import ModelConfig, Potential
from nnp_lab.training.config import TrainConfig

MODEL = ModelConfig(species=["Cu"], descriptor=DescriptorConfig.preset("metal"), hidden=[16])
TRAIN = TrainConfig(epochs=40, batch_size=4, learning_rate=3e-3, lr_patience=5, seed=0)


def slab(adatom: bool = True):
    atoms = fcc100("Cu", size=(2, 2, 3), vacuum=6.0)
    if adatom:
        add_adsorbate(atoms, "Cu", 1.7, "hollow")
    return atoms


@pytest.fixture(scope="module")
def cu_data() -> tuple[Dataset, Dataset, Dataset]:
    """EMT-labelled Langevin snapshots of a Cu(100) slab with an adatom: train/val/test."""
    frames = []
    for seed, temp in enumerate((300.0, 600.0, 900.0)):
        frames += samplers.md_snapshots(
            slab(), EMTLabeler(), temp, n_frames=12, interval=8, timestep_fs=2.0, seed=seed
        )
    data = Dataset.from_atoms(frames)
    return data.split((0.5, 0.2, 0.3), seed=0)


@pytest.fixture(scope="module")
def committee(cu_data, tmp_path_factory) -> Committee:
    train, val, _ = cu_data
    com, _ = train_committee(
        train,
        val,
        MODEL,
        CommitteeConfig(size=3, seed=0),
        TRAIN,
        workdir=tmp_path_factory.mktemp("committee"),
        show_progress=False,
    )
    return com


# ---------------------------------------------------------------------------- members
def test_members_differ_bootstrap_is_reproducible_and_training_resumes(cu_data, tmp_path):
    train, val, _ = cu_data
    cfg = CommitteeConfig(size=2, seed=3)
    short = TRAIN.model_copy(update={"epochs": 3})
    com, hist = train_committee(
        train, val, MODEL, cfg, short, workdir=tmp_path, show_progress=False
    )
    w0 = com.members[0].networks.nets[0][0].weight
    w1 = com.members[1].networks.nets[0][0].weight
    assert not torch.allclose(w0, w1)  # different seeds and resamples
    assert len(hist) == 2 and all(len(h.epoch) == 3 for h in hist)
    # same workdir: every member resumes from its finished checkpoint, same weights
    again, _ = train_committee(train, val, MODEL, cfg, short, workdir=tmp_path, show_progress=False)
    for a, b in zip(com.members, again.members):
        for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(va, vb), ka
    with pytest.raises(InputError, match="warm start from a committee of 2"):
        train_committee(train, val, MODEL, CommitteeConfig(size=3), short, warm_start=com)


# ---------------------------------------------------------------------------- calibration
def test_calibration_matches_its_definition(committee, cu_data):
    """s² = mean |ΔF|² / mean σ² (the variance-matching scale); coverage and ρ recomputed."""
    _, val, _ = cu_data
    cal = calibrate(committee, val)
    pred = committee_predictions(committee, val)
    err = pred["forces_mean"].values - val.xr["forces"].values
    std = pred["forces_std"].values
    assert cal.force_scale == pytest.approx(np.sqrt(np.mean(err**2) / np.mean(std**2)), rel=1e-9)
    within = np.abs(err) <= std * cal.force_scale
    assert cal.coverage_1sigma == pytest.approx(within.mean())
    assert -1.0 <= cal.spearman_max <= 1.0
    assert cal.n_structures == len(val)


def test_spread_ranks_test_errors(committee, cu_data):
    """On held-out frames the committee spread ranks the true force errors per structure:
    Spearman ρ of RMS spread vs RMS error > 0.5 (observed 0.83 for these 11 frames, 3
    members of 16 neurons, 18 training frames; the max-over-atoms ρ is noisier, 0.26
    here — the efficiency study reports both for full-size committees)."""
    _, _, test = cu_data
    cal = calibrate(committee, test)
    assert cal.spearman_rms > 0.5


def test_calibration_roundtrip(tmp_path):
    cal = Calibration(2.5, 1.5, 0.7, 0.8, 0.6, n_structures=4)
    cal.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == cal


# ---------------------------------------------------------------------------- explorers
def test_explorer_queues_between_threshold_and_hard_limit(committee):
    cfg = ExploreConfig(
        temperatures=[600.0], steps=60, sample_every=5, threshold=1e-3, hard_limit=5.0, seed=1
    )
    res = explore(committee, [slab()], cfg, show_progress=False)
    assert res.trajectories == 1 and res.steps == 60
    assert res.frames_judged == 12 and len(res.uncertainties) == 12
    assert res.candidates, "a threshold of 1 meV/Å must queue frames"
    for frame in res.candidates:
        assert cfg.threshold < frame.info["uncertainty"] <= cfg.hard_limit
        assert 0 <= frame.info["hot_atom"] < len(frame)
        assert frame.calc is None  # geometry only: the reference labels it later


def test_explorer_stops_at_the_hard_limit_and_restarts(cu_data):
    """Untrained members disagree wildly: every step is beyond a 1 meV/Å hard limit, so
    the trajectory restarts from its last trusted frame max_restarts times and stops —
    nothing beyond the hard limit is ever queued."""
    members = []
    for k in range(3):
        torch.manual_seed(100 + k)
        members.append(Potential(config=MODEL))
    wild = Committee(members)
    cfg = ExploreConfig(
        temperatures=[300.0, 900.0], steps=50, threshold=5e-4, hard_limit=1e-3, max_restarts=2
    )
    res = explore(wild, [slab()], cfg, show_progress=False)
    assert res.trajectories == 2 and res.stopped_trajectories == 2
    assert res.restarts == 2 * (cfg.max_restarts + 1)
    assert res.candidates == [] and res.steps == 2 * (cfg.max_restarts + 1)


def test_ring_polymer_explorer_judges_every_bead(committee):
    """beads > 1: PIMD exploration; a queued frame is ONE bead's geometry (the most
    uncertain one), the judged u is the maximum over all beads, and beads spread apart
    (a quantum ring: Cu at 300 K, P = 4, radius of gyration > 0)."""
    cluster = slab()
    cluster.pbc = False
    cfg = ExploreConfig(
        temperatures=[300.0],
        steps=30,
        sample_every=5,
        threshold=1e-4,
        hard_limit=50.0,
        beads=4,
        timestep_fs=1.0,
        seed=2,
    )
    res = explore(committee, [cluster], cfg, show_progress=False)
    assert res.trajectories == 1 and res.steps == 30 and res.frames_judged == 6
    assert len(res.candidates) == 6
    for frame in res.candidates:
        assert "PIMD P=4" in frame.info["source"] and frame.info["uncertainty"] > 1e-4
        assert len(frame) == len(cluster) and frame.calc is None
        assert np.isfinite(frame.info["energy_std"])
    moved = [np.abs(f.positions - cluster.positions).max() for f in res.candidates]
    assert max(moved) > 0.01
    with pytest.raises(InputError, match="molecules"):
        explore(committee, [slab()], cfg, show_progress=False)
    # umbrella windows: one centre per start; the bias holds the centroid's ξ there
    windows = ExploreConfig(
        **{**cfg.model_dump(), "umbrella": {"triplet": (0, 12, 1), "centers": [0.0], "kappa": 5.0}}
    )
    res = explore(committee, [cluster], windows, show_progress=False)
    assert res.candidates and all("window ξ=+0.00" in f.info["source"] for f in res.candidates)
    with pytest.raises(InputError, match="one window centre per start"):
        explore(committee, [cluster, cluster], windows, show_progress=False)


def test_explore_config_checks_limits():
    with pytest.raises(ValueError, match="hard_limit"):
        ExploreConfig(threshold=0.5, hard_limit=0.1)


# ---------------------------------------------------------------------------- selection
def test_farthest_points_visit_every_cluster_first():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = np.concatenate([c + 0.1 * rng.normal(size=(20, 2)) for c in centres])
    order = farthest_point_sampling(points, 4, first=0)
    assert sorted(k // 20 for k in order) == [0, 1, 2, 3]


def test_select_respects_threshold_budget_and_starts_at_max():
    rng = np.random.default_rng(1)
    fp = rng.normal(size=(30, 5))
    u = rng.uniform(0, 1, 30)
    picked = select_candidates(u, fp, budget=5, threshold=0.5)
    assert len(picked) == 5 and len(set(picked)) == 5
    assert picked[0] == int(np.argmax(u))
    assert all(u[k] > 0.5 for k in picked)
    assert select_candidates(u, fp, budget=5, threshold=2.0) == []
    top = select_candidates(u, fp, budget=3, threshold=0.0, prefilter=4)
    assert set(top) <= set(np.argsort(-u)[:4].tolist())
    with pytest.raises(InputError):
        select_candidates(u[:-1], fp, budget=2)


def test_fingerprint_sees_the_local_event(committee):
    """Moving only the adatom changes the hot-atom block of the fingerprint, not just
    (diluted) the mean."""
    a = slab()
    b = a.copy()
    b.positions[-1] += [0.9, 0.0, 0.0]
    fa, fb = fingerprints(committee, [a, b], hot_atoms=[len(a) - 1, len(b) - 1])
    n = committee.members[0].descriptor.num_features
    hot = np.linalg.norm(fa[n:] - fb[n:])
    mean = np.linalg.norm(fa[:n] - fb[:n])
    assert hot > 5 * mean > 0


# ---------------------------------------------------------------------------- oracle
class FailingLabeler(Labeler):
    """EMT that raises (like a non-converged SCF) on structures with an odd atom count."""

    method = "EMT-sometimes-failing"

    def settings(self):
        return {"fails": "odd atom counts"}

    def compute(self, atoms):
        if len(atoms) % 2:
            raise RuntimeError("SCF not converged after 100 cycles (injected)")
        calc = EMT()
        atoms = atoms.copy()
        atoms.calc = calc
        return LabelResult(energy=atoms.get_potential_energy(), forces=atoms.get_forces())


class WorkerKiller(Labeler):
    """Kills the worker process running it, every time; counts its attempts in a folder."""

    method = "worker-killer"

    def __init__(self, folder: str):
        self.folder = folder

    def settings(self):
        return {"folder": self.folder}

    def compute(self, atoms):
        n = len(os.listdir(self.folder))
        Path(self.folder, f"attempt-{n}-{os.getpid()}").touch()
        os._exit(1)


@pytest.fixture(scope="module", autouse=True)
def _labelers_by_value():
    # Dask workers cannot import this test module: ship its classes by value
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_oracle_matches_emt_caches_and_deduplicates(tmp_path):
    structures = [slab(), slab(adatom=False)]
    structures[1].rattle(0.02, seed=0)
    structures.append(structures[0].copy())  # identical: one task
    with DaskOracle(EMTLabeler(), cache=tmp_path / "c.sqlite", config={"n_workers": 2}) as o:
        got = o.label(structures, show_progress=False)
        assert o.computed == 2
        for atoms, res in zip(structures, got):
            ref = atoms.copy()
            ref.calc = EMT()
            assert res.ok
            assert res.energy == pytest.approx(ref.get_potential_energy(), abs=1e-10)
            np.testing.assert_allclose(res.forces, ref.get_forces(), atol=1e-10)
        again = o.label(structures, show_progress=False)
        assert o.computed == 2  # all from the cache
        assert [r.energy for r in again] == [r.energy for r in got]


def test_oracle_records_failures_and_reruns_a_dead_worker_once(tmp_path):
    ok, bad = slab(adatom=False), slab(adatom=False)[:-1]  # 12 atoms pass, 11 fail
    cfg = {"n_workers": 2, "allowed_failures": 1}
    with DaskOracle(FailingLabeler(), cache=tmp_path / "c.sqlite", config=cfg) as o:
        r_ok, r_bad = o.label([ok, bad], show_progress=False)
        assert r_ok.ok and not r_bad.ok
        assert "SCF not converged" in r_bad.error and r_bad.status == "failed"
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    with DaskOracle(WorkerKiller(str(attempts)), config=cfg) as o:
        (res,) = o.label([ok], show_progress=False)
    assert not res.ok and "KilledWorker" in res.error
    assert len(os.listdir(attempts)) == 2  # the first run and exactly one re-run


def test_label_efficiency_study_runs_both_strategies_on_one_pool(cu_data, tmp_path):
    from nnp_lab.active.efficiency import label_efficiency, plot_efficiency

    train, val, test = cu_data
    pool = []
    for a in Dataset.concat([val, test]).to_atoms():
        a.calc = None
        pool.append(a)
    short = TRAIN.model_copy(update={"epochs": 6})
    with DaskOracle(EMTLabeler(), cache=tmp_path / "c.sqlite", config={"n_workers": 2}) as o:
        res = label_efficiency(
            pool,
            train.subset(range(6)),
            val,
            test,
            o,
            MODEL,
            CommitteeConfig(size=2),
            short,
            short.model_copy(update={"epochs": 3}),
            budget=3,
            rounds=2,
            workdir=tmp_path / "work",
        )
        paid = o.computed
    assert res["n_labels"].values.tolist() == [[6, 9, 12], [6, 9, 12]]
    assert np.isfinite(res["force_rmse"].values).all()
    for s in ("active", "random"):
        picks = res["picked"].sel(strategy=s).values.ravel()
        assert len(set(picks.tolist())) == picks.size  # never the same pool frame twice
    assert paid <= 12  # each strategy buys 6; frames both picked are paid once (cache)
    assert {"labels_ratio", "random_final_force_rmse"} <= set(res.attrs)
    assert plot_efficiency(res, tmp_path / "eff.png").stat().st_size > 1000
