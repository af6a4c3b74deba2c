"""Malonaldehyde proton transfer (nnp_lab.apps.kie.malonaldehyde): reference stationary
points, the actively learned committee against GFN2-xTB, and the shipped KIE table.

Reference checks are physical: the two tautomers are mirror images (equal energy), the
transition state is a first-order saddle (one imaginary mode) of C2v symmetry at ξ = 0.
The committee is tested on geometries it never saw — bead configurations of a fresh PIMD
run with the committee itself, labelled live by GFN2-xTB.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import xarray as xr
from ase import Atoms, units

from nnp_lab.apps.kie import malonaldehyde as mal
from nnp_lab.data.labelers import XTBLabeler

KCAL = units.kcal / units.mol  # eV


def _distances(a: Atoms) -> np.ndarray:
    return np.linalg.norm(a.positions[:, None] - a.positions[None], axis=-1)


@pytest.fixture(scope="module")
def points() -> dict[str, Atoms]:
    return mal.load_points()


def test_stationary_points_recompute_and_are_what_they_claim(points) -> None:
    """The shipped points are reproduced by the ``points`` command (energies to 1 meV —
    optimiser end points differ by ≪ fmax·Δx); the tautomers are degenerate; the TS is
    C2v (its mirror image has the same distance matrix to 0.01 Å) at ξ = 0 and has exactly
    one imaginary harmonic frequency, the reactant none."""
    from ase.vibrations import Vibrations

    fresh = mal.stationary_points()
    for a, b in zip(fresh, points.values(), strict=True):
        assert a.info["name"] == b.info["name"]
        assert a.info["energy_eV"] == pytest.approx(b.info["energy_eV"], abs=1e-3)
    r, ts, p = points["reactant"], points["transition_state"], points["product"]
    assert r.info["energy_eV"] == pytest.approx(p.info["energy_eV"], abs=1e-6)
    assert abs(ts.info["xi"]) < 0.01 and r.info["xi"] < -0.6
    np.testing.assert_allclose(_distances(mal.mirror(ts)), _distances(ts), atol=0.01)
    lab = XTBLabeler()
    for atoms, n_imag in ((r, 0), (ts, 1)):
        a = atoms.copy()
        a.calc = lab.as_calculator()
        with tempfile.TemporaryDirectory() as tmp:
            vib = Vibrations(a, name=f"{tmp}/vib", delta=0.005)
            vib.run()
            energies = vib.get_energies()  # imaginary modes first, then the ~0 rigid ones
        imag = int((np.abs(energies.imag) > 50 * units.invcm).sum())
        assert imag == n_imag, (atoms.info["name"], energies / units.invcm)
    # GFN2-xTB's barrier: 3.76 kcal/mol (CCSD(T)/CBS 4.1, Wang et al. JCP 128, 224314
    # (2008)); within 1 kcal/mol of the coupled-cluster value
    assert ts.info["barrier_eV"] / KCAL == pytest.approx(4.1, abs=1.0)


@pytest.fixture(scope="module")
def committee():
    from nnp_lab.dynamics.calculator import load_model

    return load_model(mal.MODEL)


def test_committee_barrier_matches_the_reference(points, committee) -> None:
    """The committee's barrier (E_TS − E_reactant at the xTB geometries) and tautomer
    degeneracy against GFN2-xTB: within 0.25 kcal/mol (its held-out energy error is a few
    meV per molecule, written in docs/path_integrals.md)."""
    from nnp_lab.data.batch import Batch

    def energy(a: Atoms) -> float:
        b = Batch.from_atoms([a], dtype=committee.dtype, device=committee.device)
        return float(committee(b, forces=False)["energy_mean"][0])

    r, ts, p = points["reactant"], points["transition_state"], points["product"]
    barrier = energy(ts) - energy(r)
    assert (barrier - ts.info["barrier_eV"]) / KCAL == pytest.approx(0.0, abs=0.25)
    assert (energy(p) - energy(r)) / KCAL == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("start", ["reactant", "transition_state"])
def test_committee_forces_on_its_own_ring_polymers(committee, start) -> None:
    """Geometries the committee never saw: beads of a fresh PIMD run with the committee
    (P = 16, 300 K), labelled by GFN2-xTB now. The beads carry zero-point strain (xTB
    forces up to ~10 eV/Å on the hydrogens). Bounds: force RMSE ≤ 0.25 eV/Å, energy MAE
    ≤ 50 meV per molecule; the measured values (python -m nnp_lab.apps.kie.malonaldehyde
    check) are in docs/path_integrals.md."""
    r = mal.bead_errors(committee, 300.0, 16, samples=4, start=start)
    assert r["frames"] == 8 and r["max_reference_force"] > 2.0
    assert r["force_rmse"] < 0.25, r
    assert r["energy_mae"] < 0.05, r


@pytest.fixture(scope="module")
def table() -> xr.Dataset:
    return xr.load_dataset(mal.KIE_TABLE, engine="h5netcdf")


def test_kie_table_obeys_the_physics(table) -> None:
    """The shipped KIE(T) (python -m nnp_lab.apps.kie.malonaldehyde kie, docs table):
    - classical TST: the PMF of a configuration integral does not depend on the mass, so
      the classical KIE is the flux-factor ratio alone, ≈ √(m_D/m_H) for a coordinate
      carried by the proton (1.2–1.45; exactly √((4/m_H + 2/m_O)/(4/m_D + 2/m_O)) = 1.39
      for a collinear O–H–O);
    - quantum nuclei: the proton loses zero-point energy at the barrier top, so the
      deuteron's free-energy barrier is higher and KIE > classical at every T; the quantum
      excess shrinks as T rises (the KIE falls towards the classical value);
    - the two independent quantum-TST routes (umbrella PMF + flux, and mass TI) agree
      within 3 combined standard errors + 15 % (the dividing-surface umbrella and reactant
      wall of the TI, and P = 8⌈6000 K/8T⌉ beads, are %-level approximations);
    - 0 < κ ≤ 1.05 (κ(t) of 48 trajectories; > 1 only by noise)."""
    t = table["temperature"].values
    assert len(t) >= 3 and t.min() <= 200 and t.max() >= 500
    cl = table["kie_classical_tst"].values
    assert np.all((cl > 1.2) & (cl < 1.45))
    for q in ("kie_tst", "kie_qtst_ti", "kie_rpmd"):
        assert np.all(table[q].values > cl), q
    ti = table["kie_qtst_ti"].sortby("temperature").values
    assert np.all(np.diff(ti) < 0), ti
    barrier = table["free_energy_barrier"]
    assert np.all(barrier.sel(isotope="D").values > barrier.sel(isotope="H").values)
    tol = 3 * np.hypot(table["kie_tst_err"], table["kie_qtst_ti_err"]) + 0.15 * table["kie_qtst_ti"]
    assert np.all(np.abs(table["kie_tst"] - table["kie_qtst_ti"]) <= tol)
    kappa = table["kappa"].values
    assert np.all((kappa > 0) & (kappa <= 1.05))
    assert int(table.attrs["copy_restarts"]) >= 0
