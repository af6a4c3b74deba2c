"""Growth runs end to end: config → KMC → netCDF + trajectory, from the CLI and as a
server job; bad configs are refused with the field named."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
import yaml
from ase.io import read

from nnp_lab.apps.crystal_growth.growth import GrowthConfig, growth_frames, run_growth
from nnp_lab.errors import ConfigError

BOND = {
    "metal": "Ag",
    "facet": "100",
    "size": 20,
    "layers": 8,
    "temperature": 400,
    "flux": 5.0,
    "coverage": 1.5,
    "snapshots": 4,
    "barriers": "bond_counting",
    "bond_counting": {"e_d": 0.45, "e_n": 0.2, "e_es": 0.1},
}


def test_growth_result_and_frames():
    result = run_growth(GrowthConfig(**BOND))
    assert result.sizes["snapshot"] == 4
    np.testing.assert_allclose(result.coverage.values, [0.375, 0.75, 1.125, 1.5], atol=1e-9)
    assert (np.diff(result.time.values) > 0).all()
    # layer coverages add up to the deposited amount (no atom lost or created)
    np.testing.assert_allclose(result.layer_coverage.values[:, 1:].sum(1), result.coverage)
    frames = growth_frames(result, min_layer=1)
    assert [len(f) for f in frames] == list((result.coverage.values * 400).round().astype(int))
    # a frame is a physical film: nearest neighbours at a/√2 of Ag (4.09 Å), never closer
    d = frames[-1].get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    assert d.min() == pytest.approx(4.09 / np.sqrt(2), rel=1e-3)
    assert json.loads(result.attrs["config"])["metal"] == "Ag"


def test_bad_config_names_the_field():
    with pytest.raises(Exception, match="facet"):
        GrowthConfig(**{**BOND, "facet": "110"})


def test_cli_grow_writes_result_and_trajectory(tmp_path):
    cfg = tmp_path / "grow.yaml"
    cfg.write_text(yaml.safe_dump(BOND))
    out = subprocess.run(
        [sys.executable, "-m", "nnp_lab.cli", "grow", str(cfg), "--out", str(tmp_path / "g")],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert summary["coverage_ML"] == pytest.approx(1.5)
    with xr.open_dataset(tmp_path / "g" / "growth.nc", engine="h5netcdf") as ds:
        assert ds.sizes["snapshot"] == 4
    assert len(read(tmp_path / "g" / "growth.traj", index=":")) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BOND, "temprature": 300}))
    err = subprocess.run(
        [sys.executable, "-m", "nnp_lab.cli", "grow", str(bad)], capture_output=True, text=True
    )
    assert err.returncode == 2 and "temprature" in err.stderr


def test_growth_as_a_job(tmp_path):
    from nnp_lab.jobs.runner import JobManager
    from nnp_lab.server.notebooks import job_notebook

    (tmp_path / "grow.yaml").write_text(yaml.safe_dump(BOND))
    mgr = JobManager(tmp_path / "state" / "jobs.sqlite", tmp_path)
    job = mgr.submit({"kind": "crystal_growth", "config": "grow.yaml", "out": "g"})
    deadline = time.time() + 300
    while (done := mgr.store.get(job["id"]))["status"] not in ("completed", "failed"):
        assert time.time() < deadline
        mgr.dispatch()
        time.sleep(0.3)
    assert done["status"] == "completed", done["error"]
    assert done["result"]["trajectory"] == "g/growth.traj"
    fractions = [
        e["payload"]["fraction"] for e in mgr.store.events(job["id"]) if e["step"] == "growth"
    ]
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    assert job_notebook(done, tmp_path).endswith(".ipynb")
    with pytest.raises(ConfigError, match="coverage"):
        mgr.submit({"kind": "crystal_growth", "config": {**BOND, "coverage": -1}, "out": "x"})


@pytest.mark.parametrize("facet,lone,monolayer", [("100", 4, 8), ("111", 3, 9)])
def test_coordination_counts_fcc_neighbours(facet, lone, monolayer):
    """A lone adatom sits on its supports (4 on (100), 3 on (111)); an atom of a complete
    layer adds its in-plane neighbours (4 / 6); the substrate below layer 0 is bulk."""
    from nnp_lab.apps.crystal_growth.analysis import coordination
    from nnp_lab.apps.crystal_growth.lattice import Surface

    s = Surface("Cu", facet)
    grid = np.zeros((4, 10, 10), dtype=np.uint8)
    grid[0] = 1
    grid[1, 5, 5] = 1
    c = coordination(grid, s)
    assert c[1, 5, 5] == lone
    assert c[0, 0, 0] == (8 if facet == "100" else 9)  # below + in-plane, none above
    grid[1] = 1
    c = coordination(grid, s)
    assert (c[1] == monolayer).all() and (c[0] == 12).all()


def test_crystal_growth_view_follows_the_slider():
    from nnp_lab.widgets import CrystalGrowthView

    result = run_growth(GrowthConfig(**BOND))
    view = CrystalGrowthView(result, color_by="coordination")
    assert view.slider.max == 3 and "1.50 ML" in view.info.value
    assert view.curves.value[:4] == b"\x89PNG"
    view.slider.value = 0
    assert "0.38 ML" in view.info.value
    assert len(view.structure.frames[0]) == len(growth_frames(result)[0])
    assert set(np.unique(view.values[0])) <= set(range(13))
    with pytest.raises(Exception, match="color_by"):
        CrystalGrowthView(result, color_by="colour")
