"""Widgets on the Python side (the browser test checks that they render)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr
from ase.build import molecule

from nnp_lab.errors import InputError
from nnp_lab.widgets import DatasetBrowser, StructureView, TrainingMonitor
from nnp_lab.widgets.structure_view import _colour_bins


def trajectory(n: int) -> list:
    frames = []
    for k in range(n):
        a = molecule("CH3CH2OH")
        a.positions += 0.01 * k
        frames.append(a)
    return frames


def test_structure_view_trajectory_slider_colours_and_subsampling():
    frames = trajectory(30)
    values = np.arange(30 * 9, dtype=float).reshape(30, 9)
    view = StructureView(frames, color_by=values, label="spread", max_frames=10)
    assert len(view.frames) == 10 and view.slider.max == 9
    assert view.frame_index[0] == 0 and view.frame_index[-1] == 29
    view.slider.value = 9
    assert view.view.frame == 9 and view.current_frame == 29
    assert "spread" in view.colour_bar.value
    groups = _colour_bins(values[-1], "viridis", float(values.min()), float(values.max()))
    atoms = sorted(i for _, idx in groups for i in idx)
    assert atoms == list(range(9))  # every atom coloured exactly once
    single = StructureView(molecule("H2O"))
    assert single.slider is None and single.representation == "ball+stick"
    with pytest.raises(InputError, match="one value per atom"):
        StructureView(molecule("H2O"), color_by=[1.0, 2.0])


def test_training_monitor_from_callback_and_metrics(tmp_path, cu_dataset):
    from nnp_lab import Potential, Trainer

    mon = TrainingMonitor()
    pot = Potential(species=["Cu"], descriptor="metal", hidden=[8])
    Trainer(pot, cu_dataset, cu_dataset, epochs=3, batch_size=8, workdir=tmp_path).fit(
        progress=mon.callback, show_progress=False
    )
    assert mon.epochs == [1, 2, 3] and len(mon.history["val_force_mae"]) == 3
    assert mon.image.value[:4] == b"\x89PNG" and mon.progress.value == 1.0
    again = TrainingMonitor(metrics=str(tmp_path / "metrics.nc"))
    assert again.epochs == [1, 2, 3]
    np.testing.assert_allclose(again.history["val_force_mae"], mon.history["val_force_mae"])


def test_training_monitor_follows_a_job_in_the_store(tmp_path):
    """The widget holds only the job id and reads the job's events from the store."""
    from nnp_lab.jobs.store import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create({"kind": "train"}, kind="train", root=str(tmp_path))
    store.update(job, status="running")
    mon = TrainingMonitor(job_id=job, store=str(store.path), poll_s=0.1)
    for epoch in (1, 2):
        store.add_event(
            job,
            "epoch",
            {
                "epoch": epoch,
                "epochs": 2,
                "train_loss": 1.0 / epoch,
                "val_force_mae": 100.0 / epoch,
            },
        )
    store.update(job, status="completed", progress=1.0)
    deadline = time.time() + 10
    while mon.epochs != [1, 2] and time.time() < deadline:
        time.sleep(0.05)
    assert mon.epochs == [1, 2] and mon.history["val_force_mae"] == [100.0, 50.0]
    mon._thread.join(timeout=5)
    assert not mon._thread.is_alive() and "completed" in mon.status.value


def test_dataset_browser_filters_and_shows(cu_dataset):
    browser = DatasetBrowser(cu_dataset)
    assert len(browser.table.options) == len(cu_dataset)
    browser.filter.value = "no such source"
    assert browser.table.options == ()
    browser.filter.value = ""
    browser.table.value = 3
    (view,) = browser.view_box.children
    assert isinstance(view, StructureView) and view.values is not None


def test_hbond_explorer_moves_the_dimer_and_reads_off_energies():
    """HBondExplorer on the shipped water-dimer scan and H-bond committee: the sliders
    rebuild the dimer at the chosen R_DA/θ (measured back by the geometric analysis), the
    energies line shows the NNP, xTB and — on the scan's reference grid — the reference
    energy, and the map image follows."""
    from nnp_lab.apps.hbond.geometry import find_hbonds
    from nnp_lab.apps.hbond.train import RESOURCES
    from nnp_lab.widgets import HBondExplorer

    ex = HBondExplorer(
        RESOURCES / "water_dimer.nc",
        RESOURCES / "hbond_committee.pt",
        liquid=RESOURCES / "liquid_water.nc",
    )
    first_map = ex.map_image.value
    # the liquid panel shows the shipped analysis' numbers
    peak = xr.open_dataset(RESOURCES / "liquid_water.nc").attrs["rdf_peak_r"]
    assert f"{peak:.2f} Å" in ex.liquid_summary.value
    assert ex.liquid_image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NNP" in ex.energies.value and "GFN2-xTB" in ex.energies.value
    ex.phi_slider.value = ex.eq.phi
    ex.r_slider.value = 3.0
    ex.theta_slider.value = 160.0
    bonds = find_hbonds(ex.atoms, r_da_max=4.0, r_ha_max=3.5, angle_min=90)
    assert any(abs(b.r_da - 3.0) < 1e-6 and abs(b.theta_dha - 160.0) < 1e-4 for b in bonds)
    assert ex.reference_energy is not None  # (3.0 Å, 160°) is on the reference grid
    assert f"{ex.reference_energy:.2f}" in ex.energies.value
    assert abs(ex.prediction["mean"][0] - ex.reference_energy) < 0.5
    assert ex.map_image.value != first_map
    ex.r_slider.value = 3.05  # off the grid: no reference number
    assert ex.reference_energy is None and "not on the reference grid" in ex.energies.value


def test_kie_explorer_follows_the_temperature_and_shows_both_rings(tmp_path):
    """KIEExplorer on the shipped Eckart KIE table and two short PIMD runs (H₂O and D₂O,
    8 beads): the slider's temperature picks the table row (the KIE values in the text are
    the table's), the plot follows, and the 3D view holds every bead of both molecules, the
    D₂O ring polymers being smaller (radius of gyration) than the H₂O ones."""
    from ase.build import molecule

    from nnp_lab.apps.hbond.train import RESOURCES
    from nnp_lab.apps.kie.eckart import RESOURCE
    from nnp_lab.dynamics.pimd import RingPolymer, run_pimd, with_isotope
    from nnp_lab.widgets import KIEExplorer

    water = molecule("H2O")
    water.center(vacuum=6.0)
    water.pbc = True
    runs = {}
    for label, atoms in (("H2O", water), ("D2O", with_isotope(water, [1, 2]))):
        ring = RingPolymer(
            atoms,
            RESOURCES / "water_committee.pt",
            {"n_beads": 8, "temperature_K": 300.0, "seed": 1},
        )
        runs[label] = run_pimd(
            ring,
            400,
            sample_every=10,
            positions_every=4,
            out=tmp_path / f"{label}.nc",
            show_progress=False,
        )
    ex = KIEExplorer(RESOURCE, runs=runs)
    table = xr.open_dataset(RESOURCE)
    first = ex.plot.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    ex.slider.value = 186.0
    assert f"{float(table['kie_exact'].sel(temperature=186.0)):.3g}" in ex.text.value
    assert "k(m) RPMD" in ex.text.value and ex.plot.value != first
    assert len(ex.ring_atoms) == sum(n for _, _, n in ex.spans) == 2 * 8 * 3
    rg_h = runs["H2O"]["radius_of_gyration"].values[10:, 1:].mean()
    rg_d = runs["D2O"]["radius_of_gyration"].values[10:, 1:].mean()
    assert rg_d < 0.85 * rg_h  # free-particle limit: m^(-1/2) → 0.71
    with pytest.raises(InputError, match="bead positions"):
        KIEExplorer(RESOURCE, runs={"x": runs["H2O"].drop_vars("bead_positions")})


def test_kie_explorer_shows_the_malonaldehyde_table():
    """The molecular table: routes RPMD, centroid TST (umbrella PMF), mass TI, classical;
    rates of H and D in 1/ps at the slider's temperature."""
    import xarray as xr

    from nnp_lab.apps.kie.malonaldehyde import KIE_TABLE
    from nnp_lab.widgets import KIEExplorer

    table = xr.load_dataset(KIE_TABLE, engine="h5netcdf")
    ex = KIEExplorer(KIE_TABLE)
    t = float(table["temperature"].min())
    ex.slider.value = t
    text = ex.text.value
    assert "centroid TST (umbrella PMF)" in text and "quantum TST (mass TI)" in text
    assert "k(H) RPMD" in text and "k(D) RPMD" in text and "1/ps" in text
    assert f"{float(table['kie_rpmd'].sel(temperature=t)):.3g}" in text
