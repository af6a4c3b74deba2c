"""The demo end to end (quick variant: every structure type, fewer frames and epochs)."""

from __future__ import annotations

import json

import pytest
import xarray as xr

from nnp_lab import Dataset, load
from nnp_lab.demo import TARGETS, run_demo


@pytest.mark.slow
def test_quick_demo_meets_the_targets(tmp_path):
    summary = run_demo(tmp_path, quick=True, show_progress=False)
    for name in (
        "dataset.nc",
        "model.pt",
        "metrics.nc",
        "test_parity.nc",
        "parity.png",
        "nve.nc",
        "summary.json",
    ):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "parity.png").read_bytes()[:4] == b"\x89PNG"
    ds = Dataset.load(tmp_path / "dataset.nc")
    assert ds.summary()["methods"] == ["EMT"] and len(ds) == summary["dataset"]["structures"]
    sources = set(ds.xr["source"].values.astype(str))
    assert any("111-trimer" in s for s in sources) and any("md(" in s for s in sources)
    # the accuracy targets, on held-out EMT structures (meV/atom, meV/Å, meV/atom/ps)
    assert summary["test_energy_mae_meV_per_atom"] < TARGETS["energy_mae"]
    assert summary["test_force_mae_meV_per_A"] < TARGETS["force_mae"]
    assert abs(summary["nve_drift_meV_per_atom_per_ps"]) < TARGETS["nve_drift"]
    nve = xr.load_dataset(tmp_path / "nve.nc")
    assert nve["time"].attrs["units"] == "ps" and float(nve["time"][-1]) == pytest.approx(0.3)
    model = load(tmp_path / "model.pt")
    assert model.metadata["dataset_hash"] and model.metadata["reference_methods"] == ["EMT"]
    assert json.loads((tmp_path / "summary.json").read_text())["targets_met"]["energy_mae"]
