"""The active-learning loop end to end on real references (EMT Cu, GFN2-xTB water), from
the command line, and killed mid-labelling then resumed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr
import yaml
from ase import Atoms
from ase.build import molecule
from typer.testing import CliRunner

from nnp_lab.cli import app
from nnp_lab.data.dataset import Dataset

pytestmark = pytest.mark.slow

SLAB = {
    "surface": {"facet": "fcc100", "symbol": "Cu", "size": [2, 2, 3], "vacuum": 6.0},
    "adsorbates": [{"symbol": "Cu", "height": 1.7, "position": "hollow"}],
    "name": "100-adatom",
}


def cu_config(workdir: str, initial_kind: str = "md", iterations: int = 2) -> dict:
    initial = (
        {"kind": "md", "temperatures": [300, 600], "frames": 5, "interval": 8, "timestep_fs": 2.0}
        if initial_kind == "md"
        else {"kind": "rattle", "n": 8, "stdev": 0.08}
    )
    return {
        "workdir": workdir,
        "labeler": {"kind": "emt"},
        "initial": [{**initial, "structures": [SLAB]}],
        "test": [
            {
                "kind": "md",
                "temperatures": [300, 900],
                "frames": 4,
                "interval": 10,
                "structures": [SLAB],
            }
            if initial_kind == "md"
            else {"kind": "rattle", "n": 6, "stdev": 0.1, "structures": [SLAB]}
        ],
        "starts": [SLAB],
        "model": {"descriptor": "metal", "hidden": [16]},
        "committee": {"size": 3},
        "training": {"epochs": 30, "batch_size": 4, "learning_rate": 0.003, "lr_patience": 5},
        "retraining": {"epochs": 8, "batch_size": 4, "learning_rate": 0.002},
        "explore": {
            "temperatures": [500, 900],
            "steps": 60,
            "sample_every": 5,
            "threshold": 0.005,
            "hard_limit": 3.0,
        },
        "select": {"budget": 3},
        "oracle": {"n_workers": 2},
        "stop": {"max_iterations": iterations},
    }


def structure_key(atoms: Atoms) -> str:
    return hashlib.sha256(np.round(atoms.positions, 8).tobytes()).hexdigest()


def test_cu_emt_loop_from_the_command_line(tmp_path):
    cfg_path = tmp_path / "al.yaml"
    cfg_path.write_text(yaml.safe_dump(cu_config("run")))
    result = CliRunner().invoke(app, ["active-learn", str(cfg_path), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["iterations"] == 3
    run = tmp_path / "run"
    assert json.loads((run / "state.json").read_text())["stage"] == "train"
    with xr.open_dataset(run / "al_log.nc", engine="h5netcdf") as log:
        log = log.load()
    assert log.iteration.values.tolist() == [0, 1, 2]
    # every selected frame was labelled and entered the data: labels grow by the selection
    n = log["n_labels"].values
    assert (np.diff(n) == log["selected"].values[1:]).all()
    assert (log["selected"].values[1:] <= log["candidates"].values[1:]).all()
    assert (
        log["uncertainty_hist"].sum("uncertainty_bin").values == log["frames_judged"].values
    ).all()
    assert np.isfinite(log["test_force_rmse"].values).all()
    assert np.isfinite(log["stage_seconds"].sel(iteration=[1, 2]).values).all()
    assert log.attrs["method"] == "EMT"
    train = Dataset.load(run / "iter_002" / "train.nc")
    val = Dataset.load(run / "iter_002" / "val.nc")
    added = np.asarray(Dataset.concat([train, val]).xr["info_al_iteration"].values)
    assert sorted(np.unique(added[np.isfinite(added)]).astype(int).tolist()) == [1, 2]
    # the same command again: nothing to do (already stopped), no new labels
    again = CliRunner().invoke(app, ["active-learn", str(cfg_path), "-q"])
    assert (
        again.exit_code == 0
        and json.loads(again.output[again.output.index("{") :])["labels"] == n[-1]
    )


def test_changed_config_is_refused_on_resume(tmp_path):
    from nnp_lab.active.loop import ActiveLearner
    from nnp_lab.errors import ConfigError

    cfg = cu_config(str(tmp_path / "run"), iterations=0)
    ActiveLearner(cfg, show_progress=False).run()
    steered = json.loads(json.dumps(cfg))
    cfg["committee"] = {"size": 4}
    with pytest.raises(ConfigError, match="different config"):
        ActiveLearner(cfg, show_progress=False).run()
    # steering is allowed: a resumed run may explore and select differently from now on
    steered["explore"]["temperatures"] = [700]
    steered["select"]["budget"] = 2
    steered["stop"]["max_iterations"] = 1
    ActiveLearner(steered, show_progress=False).run()
    used = json.loads((tmp_path / "run" / "iter_001" / "explore_config.json").read_text())
    assert used["explore"]["temperatures"] == [700.0]


FLAKY_SCRIPT = """
import hashlib, os, sys, time
from pathlib import Path
import numpy as np
from ase.calculators.emt import EMT
from nnp_lab.active.loop import ActiveLearner
from nnp_lab.data.labelers import Labeler, LabelResult

class FlakyEMT(Labeler):
    '''EMT that logs every calculation, is slow on request, and fails (like an SCF that
    does not converge) on about a third of the structures.'''
    method = "EMT-flaky"
    def __init__(self, log_dir, delay):
        self.log_dir, self.delay = log_dir, delay
    def settings(self):  # the delay does not change results: not part of the cache key
        return {"fails": "sha256(positions) % 3 == 0"}
    def compute(self, atoms):
        key = hashlib.sha256(np.round(atoms.positions, 8).tobytes()).hexdigest()
        Path(self.log_dir, f"{key}.{os.getpid()}.{time.time_ns()}").touch()
        time.sleep(self.delay)
        if int(key, 16) % 3 == 0:
            raise RuntimeError("SCF not converged (injected failure)")
        a = atoms.copy()
        a.calc = EMT()
        return LabelResult(energy=a.get_potential_energy(), forces=a.get_forces())

if __name__ == "__main__":  # Dask spawns its workers: guard the entry point
    config, log_dir, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    ActiveLearner(config, labeler=FlakyEMT(log_dir, delay), show_progress=False).run()
"""


def test_killed_loop_resumes_with_no_duplicate_and_no_missing_label(tmp_path):
    """Kill the whole process group (loop + Dask workers) while iteration 1 is labelling,
    with injected reference failures; a resumed run finishes with every selected frame
    present exactly once (ok or failed with its reason) and no structure twice."""
    script = tmp_path / "flaky.py"
    script.write_text(textwrap.dedent(FLAKY_SCRIPT))
    cfg = cu_config("run", initial_kind="rattle", iterations=2)
    cfg["select"] = {"budget": 4}
    cfg_path = tmp_path / "al.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    calls = tmp_path / "calls"
    calls.mkdir()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cfg_path), str(calls), "0.4"],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = tmp_path / "run" / "state.json"
    try:
        deadline = time.time() + 300
        n_before = None
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the loop ended before it could be killed: {proc.stderr.read()}")
            st = json.loads(state.read_text()) if state.exists() else {}
            if st.get("iteration") == 1 and st.get("stage") == "select":
                if n_before is None:
                    n_before = len(os.listdir(calls))
                elif len(os.listdir(calls)) >= n_before + 1:
                    break  # labelling of iteration 1 is under way
            time.sleep(0.05)
        else:
            pytest.fail("iteration 1 never started labelling")
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert json.loads(state.read_text())["stage"] == "select"  # killed mid-labelling

    done = subprocess.run(
        [sys.executable, str(script), str(cfg_path), str(calls), "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    final = Dataset.concat([Dataset.load(run / "iter_002" / f) for f in ("train.nc", "val.nc")])
    keys = [structure_key(a) for a in final]
    assert len(keys) == len(set(keys)), "a structure entered the data twice"
    status = final.status
    assert set(status) <= {"ok", "failed"}, "a structure is missing its label"
    errors = np.asarray(final.xr["error"].values).astype(str)
    assert (status == "failed").any() and all(
        "injected failure" in e for e in errors[status == "failed"]
    )
    for k in (1, 2):
        chosen = json.loads((run / f"iter_{k:03d}" / "selected.json").read_text())["selected"]
        cands = Dataset.load(run / f"iter_{k:03d}" / "candidates.nc")
        for c in chosen:
            assert keys.count(structure_key(cands[int(c)])) == 1
    # labels are paid once; only calculations in flight at the kill (≤ one per worker)
    # could be paid again
    per_key: dict[str, int] = {}
    for name in os.listdir(calls):
        per_key[name.split(".")[0]] = per_key.get(name.split(".")[0], 0) + 1
    assert sum(v - 1 for v in per_key.values()) <= 2


def test_xtb_water_cluster_loop(tmp_path):
    """A molecular system with GFN2-xTB (tblite): water trimer, one iteration."""
    import ase.io

    trimer = molecule("H2O")
    for shift in ([2.8, 0.0, 0.0], [1.4, 2.4, 0.0]):
        w = molecule("H2O")
        w.rotate(90, "z")
        w.translate(shift)
        trimer += w
    ase.io.write(tmp_path / "trimer.xyz", trimer)
    spec = {"file": "trimer.xyz", "name": "water-trimer"}
    cfg = {
        "workdir": "run",
        "labeler": {"kind": "xtb", "method": "GFN2-xTB"},
        "initial": [{"kind": "rattle", "n": 10, "stdev": 0.06, "structures": [spec]}],
        "starts": [spec],
        "model": {"descriptor": "ani1x", "hidden": [16]},
        "committee": {"size": 3},
        "training": {"epochs": 25, "batch_size": 4, "learning_rate": 0.003},
        "retraining": {"epochs": 6, "batch_size": 4},
        "explore": {
            "temperatures": [300, 600],
            "steps": 40,
            "sample_every": 5,
            "timestep_fs": 0.5,
            "threshold": 0.01,
            "hard_limit": 3.0,
        },
        "select": {"budget": 3},
        "oracle": {"n_workers": 2},
        "stop": {"max_iterations": 1},
    }
    from nnp_lab.active.loop import ActiveLearner

    learner = ActiveLearner(cfg, base_dir=tmp_path, show_progress=False)
    log = learner.run()
    assert log.iteration.values.tolist() == [0, 1]
    assert int(log["selected"].sel(iteration=1)) > 0
    train, val = learner.datasets(1)
    data = Dataset.concat([train, val])
    assert {str(m) for m in data.xr["method"].values} == {learner.labeler.method}
    assert "GFN2" in learner.labeler.method and data.summary()["labelled"] == len(data)


def test_packaged_active_learning_config_is_valid():
    """The example config shipped with the package (and shown in the README) validates."""
    from importlib import resources

    from nnp_lab.active.loop import ActiveLearningConfig

    text = resources.files("nnp_lab.resources").joinpath("cu_active_learning.yaml").read_text()
    cfg = ActiveLearningConfig.model_validate(yaml.safe_load(text))
    assert cfg.committee.size == 4 and cfg.explore.hard_limit > cfg.explore.threshold
    assert [s.name for s in cfg.starts] == ["100-adatom", "111-adatom"]
