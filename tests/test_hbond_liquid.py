"""Liquid water with the shipped nnp-lab water committee (grown by active learning with
GFN2-xTB): accuracy against GFN2-xTB on liquid frames the committee produced itself,
MD checkpoint/resume, and the shipped ≥ 500-molecule results recomputed from the frames
shipped with them and compared with experiment."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from nnp_lab.apps.hbond.liquid import frames_of, load_trajectory, run_liquid_md
from nnp_lab.apps.hbond.liquid_analysis import (
    EXPERIMENT,
    analyse,
    hbond_populations,
    rdf,
    rdf_features,
)
from nnp_lab.apps.hbond.train import RESOURCES
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee

COMMITTEE = RESOURCES / "water_committee.pt"
LIQUID = RESOURCES / "liquid_water.nc"
FRAMES = RESOURCES / "liquid_frames.nc"


@pytest.fixture(scope="module")
def committee() -> Committee:
    return Committee.load(COMMITTEE)


@pytest.fixture(scope="module")
def short_run(committee, tmp_path_factory):
    """32 molecules, 0.5 ps equilibration (the packed box relaxes and heats; the Bussi
    thermostat, τ = 0.1 ps, takes the heat out) + 0.2 ps at 300 K, frames every 20 fs."""
    out = tmp_path_factory.mktemp("liq") / "traj.nc"
    return run_liquid_md(
        committee,
        out,
        n_molecules=32,
        equilibration_ps=0.5,
        production_ps=0.2,
        sample_fs=20.0,
        seed=5,
        show_progress=False,
    )


def test_committee_md_keeps_molecules_and_temperature(short_run):
    res = hbond_populations(short_run)
    assert res["broken_oh_frames"] == 0  # no water dissociates at 300 K
    # Bussi thermostat, 93 degrees of freedom: instantaneous T fluctuates by ≈ 300·√(2/93)
    assert 200.0 < float(short_run["temperature"].mean()) < 400.0
    assert np.isfinite(short_run["potential_energy"].values).all()


def test_committee_against_gfn2_xtb_on_its_own_liquid_frames(short_run):
    """The potential's reference is GFN2-xTB: on liquid frames its own MD visited (not in
    the training data), energies and forces agree with xTB. Bounds: 2× the errors
    measured when the committee was shipped (docs/hydrogen_bonds.md, liquid section)."""
    from nnp_lab.data.labelers import XTBLabeler

    com = Committee.load(COMMITTEE)
    lab = XTBLabeler("GFN2-xTB")
    frames = frames_of(short_run, [3, 9])
    de, df = [], []
    for a in frames:
        ref = lab.label(a)
        assert ref.ok
        pred = com.predict(a)
        de.append((pred["energy_mean"][0] - ref.energy) / len(a))
        df.append(np.abs(pred["forces_mean"] - ref.forces).mean())
    meta = json.loads(xr.open_dataset(LIQUID).attrs["model_errors"])
    assert np.mean(np.abs(de)) < max(2 * meta["energy_mae_mev_atom"] / 1000, 0.005)
    assert np.mean(df) < 2 * meta["force_mae_mev_a"] / 1000


def test_liquid_md_resumes_after_a_kill(committee, tmp_path):
    out = tmp_path / "traj.nc"
    kw = dict(
        n_molecules=16,
        equilibration_ps=0.01,
        production_ps=0.04,
        sample_fs=2.0,
        checkpoint_every=20,
        seed=1,
        show_progress=False,
    )

    class Killed(Exception):
        pass

    def kill(event):
        if event["step"] == 60:
            raise Killed

    with pytest.raises(Killed):
        run_liquid_md(committee, out, progress=kill, **kw)
    partial = out.with_name(out.name + ".partial.nc")
    assert partial.exists() and not out.exists()
    with xr.open_dataset(partial, engine="h5netcdf") as ck:
        before = ck["positions"].values.copy()
        assert int(ck.attrs["step"]) == 60
    ds = run_liquid_md(committee, out, **kw)
    assert ds.sizes["frame"] == 20 and not partial.exists()
    np.testing.assert_allclose(np.diff(ds["time"].values), 0.002, atol=1e-12)
    np.testing.assert_array_equal(ds["positions"].values[: len(before)], before)
    out.unlink()
    with pytest.raises(Killed):
        run_liquid_md(committee, out, progress=kill, **kw)
    with pytest.raises(InputError, match="other settings"):  # never mixed with another run
        run_liquid_md(committee, out, **{**kw, "seed": 2})


def test_shipped_liquid_results_against_experiment():
    """≥ 500 molecules at 300 K. The first O–O peak sits where experiment puts it (2.80 Å,
    X-ray; ± 0.15 Å covers every water model in use). The H-bond network exists but is
    weaker than in real water: GFN2-xTB, the reference, is known to give too weak H-bonds
    and too fluid a liquid (Wu et al., arXiv:2503.11867, 2025), so peak height, H-bonds
    per molecule (3.5–3.7 with this criterion in classical and ab initio water) and
    lifetimes are reported in docs/hydrogen_bonds.md, and bounded here only against a
    broken network (a gas has none, ice 4)."""
    res = xr.open_dataset(LIQUID)
    assert res.attrs["n_molecules"] >= 500
    assert res.attrs["broken_oh_frames"] == 0
    assert abs(res.attrs["rdf_peak_r"] - EXPERIMENT["rdf_peak_r"]) <= 0.15
    assert 1.5 < res.attrs["rdf_peak_g"] < 3.5
    assert 2.0 <= res.attrs["hbonds_per_molecule_mean"] <= 4.0
    assert 0.0 < res.attrs["tau_continuous_ps"] < res.attrs["tau_intermittent_ps"]
    assert abs(res.attrs["mean_temperature_K"] - 300.0) < 5.0
    g = res["g_oo"].sel(r=slice(6.0, 8.0))
    assert abs(float(g.mean()) - 1.0) < 0.05  # g → 1 at long range: normalisation


def test_shipped_results_recomputed_from_shipped_frames():
    """The shipped frames (a subsample of the same production run) give the same RDF
    peak and H-bond count as the full analysis (statistical tolerance: 20 frames of
    512 molecules)."""
    res = xr.open_dataset(LIQUID)
    traj = load_trajectory(FRAMES)
    o = traj["numbers"].values == 8
    f = rdf_features(rdf(traj["positions"].values[:, o], traj["cell"].values, r_max=8.0))
    assert f["rdf_peak_r"] == pytest.approx(res.attrs["rdf_peak_r"], abs=0.06)
    assert f["rdf_peak_g"] == pytest.approx(res.attrs["rdf_peak_g"], rel=0.08)
    sub = analyse(traj, max_lag_ps=0.5)
    assert sub.attrs["hbonds_per_molecule_mean"] == pytest.approx(
        res.attrs["hbonds_per_molecule_mean"], abs=0.1
    )
