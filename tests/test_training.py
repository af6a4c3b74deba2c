"""Training: errors go down, LR/early stopping react, killed runs resume exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr

from nnp_lab import Dataset, Potential, Trainer, evaluate
from nnp_lab.errors import CheckpointError


def _small_model(seed: int = 0) -> Potential:
    torch.manual_seed(seed)
    return Potential(species=["Cu"], descriptor="metal", hidden=[16, 16])


def test_training_reduces_errors_and_records_history(cu_dataset, tmp_path):
    train, val = cu_dataset.split((0.75, 0.25), seed=1)
    pot = _small_model()
    seen = []
    trainer = Trainer(
        pot, train, val, epochs=12, batch_size=4, learning_rate=3e-3, workdir=tmp_path
    )
    hist = trainer.fit(progress=seen.append, show_progress=False)
    assert isinstance(hist, xr.Dataset) and hist.sizes["epoch"] == 12 == len(seen)
    assert hist["val_force_mae"].attrs["units"] == "meV/Å"
    f = hist["val_force_mae"].values
    assert f[-1] < 0.6 * f[0], f  # learning happened
    assert seen[-1]["epoch"] == 12 and "val_energy_mae" in seen[-1]
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "metrics.nc").exists()
    parity = evaluate(pot, val)
    # restore_best: the returned weights are those of the best validation epoch
    assert parity.attrs["force_mae"] == pytest.approx(
        np.nanmin(hist["val_force_mae"].values), rel=0.05
    )
    assert pot.metadata["dataset_hash"] == train.content_hash()


def test_plateau_reduces_lr_then_stops_early(cu_dataset):
    pot = _small_model()
    trainer = Trainer(
        pot,
        cu_dataset,
        cu_dataset,
        epochs=40,
        learning_rate=1e-7,
        min_lr=1e-9,
        lr_patience=1,
        early_stopping_patience=4,
        lr_factor=0.5,
    )
    hist = trainer.fit(show_progress=False)
    lr = hist["learning_rate"].values
    assert trainer.stopped_early and hist.sizes["epoch"] < 40
    assert lr[-1] < lr[0]


def test_progress_callback_error_propagates(cu_dataset, tmp_path):
    def boom(info):
        if info["epoch"] == 2:
            raise RuntimeError("callback failed")

    trainer = Trainer(_small_model(), cu_dataset, cu_dataset, epochs=5, workdir=tmp_path)
    with pytest.raises(RuntimeError, match="callback failed"):
        trainer.fit(progress=boom, show_progress=False)
    assert trainer.epoch == 2  # nothing ran after the failing callback


def test_resume_refuses_other_dataset(cu_dataset, tmp_path):
    a, b = cu_dataset.split((0.5, 0.5), seed=0)
    Trainer(_small_model(), a, b, epochs=1, workdir=tmp_path).fit(show_progress=False)
    with pytest.raises(CheckpointError, match="different training set"):
        Trainer(_small_model(), b, a, epochs=2, workdir=tmp_path).fit(
            resume=True, show_progress=False
        )


CONFIG = """
model: {descriptor: metal, hidden: [16, 16]}
training: {epochs: 14, batch_size: 4, dtype: float64, learning_rate: 0.003,
           checkpoint_every: 1, early_stopping_patience: 100, seed: 3}
split: {fractions: [0.7, 0.2, 0.1], seed: 0}
"""


def _train_cmd(data, out, cfg, resume=False):
    cmd = [
        sys.executable,
        "-m",
        "nnp_lab.cli",
        "train",
        str(data),
        "--out",
        str(out),
        "--config",
        str(cfg),
        "-q",
    ]
    return cmd + (["--resume"] if resume else [])


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(cu_dataset, tmp_path):
    """SIGKILL a real training process after epoch k; resuming gives the same model."""
    data = tmp_path / "data.nc"
    cu_dataset.save(data)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    subprocess.run(
        _train_cmd(data, tmp_path / "full", cfg), check=True, env=env, capture_output=True
    )

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(data, killed, cfg), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = killed / "checkpoint.pt"
    epoch_at_kill = 0
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            epoch_at_kill = torch.load(ckpt, weights_only=True)["epoch"]
            if epoch_at_kill >= 2:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the training finished before it could be killed"
    last = torch.load(ckpt, weights_only=True)["epoch"]
    assert 2 <= last < 14
    assert not (killed / "model.pt").exists()

    subprocess.run(
        _train_cmd(data, killed, cfg, resume=True), check=True, env=env, capture_output=True
    )
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "model.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-14)
    ha = xr.load_dataset(tmp_path / "full" / "metrics.nc")
    hb = xr.load_dataset(killed / "metrics.nc")
    assert ha.sizes["epoch"] == hb.sizes["epoch"] == 14  # no epoch lost or repeated
    np.testing.assert_allclose(ha["val_loss"].values, hb["val_loss"].values, rtol=1e-10)


def test_dataset_roundtrip_keeps_training_inputs(cu_dataset, tmp_path):
    cu_dataset.save(tmp_path / "d.nc")
    again = Dataset.load(tmp_path / "d.nc")
    assert again.content_hash() == cu_dataset.content_hash()
