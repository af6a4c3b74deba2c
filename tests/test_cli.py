"""The nnp-lab command line, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def nnp(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "nnp_lab.cli", *args], capture_output=True, text=True, env=ENV
    )
    if check and res.returncode != 0:
        raise AssertionError(f"nnp-lab {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def alloy_file(tmp_path_factory):
    """Cu/Ag frames with EMT energies and forces in an extxyz file."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(12):
        a = bulk("Cu", "fcc", a=3.7, cubic=True)
        a.symbols[rng.choice(4, size=1 + k % 3, replace=False)] = "Ag"
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        a.get_forces()
        frames.append(a)
    path = tmp_path_factory.mktemp("alloy") / "alloy.extxyz"
    write(path, frames)
    return path


def test_train_with_defaults_then_eval(alloy_file, tmp_path):
    out = tmp_path / "run"
    res = nnp("train", str(alloy_file), "--out", str(out), "--epochs", "2", "-q")
    summary = json.loads(res.stdout)
    assert summary["species"] == ["Cu", "Ag"]  # inferred from the file
    assert summary["epochs_trained"] == 2
    for name in ("model.pt", "checkpoint.pt", "metrics.nc", "test_parity.nc"):
        assert (out / name).exists(), name
    res = nnp("eval", str(out / "model.pt"), str(alloy_file), "--plot", str(tmp_path / "p.png"))
    metrics = json.loads(res.stdout)
    assert metrics["n_structures"] == 12 and np.isfinite(metrics["force_mae"])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dataset_build_from_yaml(tmp_path):
    cfg = tmp_path / "build.yaml"
    cfg.write_text(
        "output: small.nc\n"
        "labeler: {kind: emt}\n"
        "sources:\n"
        "  - kind: rattle\n"
        "    n: 3\n"
        "    structures: [{bulk: {symbol: Cu, cubic: true}}]\n"
        "  - kind: md\n"
        "    frames: 2\n"
        "    interval: 2\n"
        "    temperatures: [500]\n"
        "    structures: [{surface: {facet: fcc111, symbol: Cu, size: [2, 2, 2]}}]\n"
    )
    res = nnp("dataset", "build", str(cfg), "-q")
    info = json.loads(res.stdout)
    assert info["structures"] == 5 and info["labelled"] == 5 and info["methods"] == ["EMT"]
    assert (tmp_path / "small.nc").exists() and (tmp_path / "label_cache.sqlite").exists()
    again = json.loads(nnp("dataset", "info", str(tmp_path / "small.nc")).stdout)
    assert again["structures"] == 5


def test_errors_are_one_clear_line(tmp_path, alloy_file):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("training:\n  epoch: 3\n")
    res = nnp(
        "train", str(alloy_file), "--out", str(tmp_path / "x"), "--config", str(cfg), check=False
    )
    assert res.returncode == 2
    assert "training.epoch: unknown field" in res.stderr and "Traceback" not in res.stderr
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00garbage")
    res = nnp("dataset", "info", str(junk), check=False)
    assert res.returncode == 2 and "ase.io could not read it" in res.stderr
    res = nnp("eval", str(junk), str(alloy_file), check=False)
    assert res.returncode == 2 and "not a readable nnp-lab model file" in res.stderr
