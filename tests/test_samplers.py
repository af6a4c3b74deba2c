"""Geometry samplers: reproducibility, physics checks, argument errors."""

from __future__ import annotations

# OMP_WAIT_POLICY=PASSIVE is set in conftest.py before pyscf can be imported.
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.data.s22 import create_s22_system
from ase.optimize import BFGS

from nnp_lab.data.dataset import Dataset
from nnp_lab.data.labelers import EMTLabeler, XTBLabeler
from nnp_lab.data.samplers import (
    dimer_scan,
    md_snapshots,
    normal_mode_samples,
    normal_modes,
    rattle,
)
from nnp_lab.errors import InputError


def _cu() -> Atoms:
    return bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)


# ---------------------------------------------------------------------------- rattle
def test_rattle_reproducible_and_statistics():
    atoms = _cu()
    a = rattle(atoms, 5, stdev=0.05, seed=7)
    b = rattle(atoms, 8, stdev=0.05, seed=7)
    for x, y in zip(a, b[:5], strict=True):  # frame k depends only on (seed, k)
        np.testing.assert_array_equal(x.positions, y.positions)
    c = rattle(atoms, 5, stdev=0.05, seed=8)
    assert not np.allclose(a[0].positions, c[0].positions)
    disp = np.concatenate([f.positions - atoms.positions for f in b]).ravel()
    # 8*32*3 = 768 Gaussian samples: std estimate has relative error 1/sqrt(2*768) = 2.6%;
    # 4 sigma -> 10%
    assert np.std(disp) == pytest.approx(0.05, rel=0.10)
    assert "rattle" in a[0].info["source"] and a[0].calc is None
    np.testing.assert_array_equal(atoms.positions, _cu().positions)  # input untouched


# ---------------------------------------------------------------------------- MD
def test_md_snapshots_reproducible_and_labels_equal_emt():
    atoms = _cu()
    frames = md_snapshots(atoms, EMTLabeler(), 300.0, n_frames=4, interval=5, seed=3)
    again = md_snapshots(atoms, EMTLabeler(), 300.0, n_frames=4, interval=5, seed=3)
    other = md_snapshots(atoms, EMTLabeler(), 300.0, n_frames=4, interval=5, seed=4)
    assert len(frames) == 4
    for f, g in zip(frames, again, strict=True):
        np.testing.assert_array_equal(f.positions, g.positions)  # same seed -> same trajectory
    assert not np.allclose(frames[-1].positions, other[-1].positions)
    for f in frames:
        ref = f.copy()
        ref.calc = EMT()
        # attached labels are EMT's own numbers for these positions: 1e-10 (float noise)
        assert f.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(f.get_forces(), ref.get_forces(), atol=1e-10, rtol=0)
        assert f.info["method"] == "EMT"
    assert [f.info["md_step"] for f in frames] == [5, 10, 15, 20]
    ds = Dataset.from_atoms(frames)
    assert list(ds.status) == ["ok"] * 4  # labels reach the dataset without recomputation
    assert np.isfinite(ds.xr["stress"].values).all()  # periodic EMT frames carry stress


def test_md_temperature_ramp_and_plain_calculator():
    frames = md_snapshots(_cu(), EMT(), [100.0, 400.0], n_frames=4, interval=2, seed=0)
    temps = [f.info["md_temperature_K"] for f in frames]
    np.testing.assert_allclose(temps, [100.0, 200.0, 300.0, 400.0])  # linear ramp, exact
    assert frames[0].info["method"] == "ASE/EMT"


def test_md_initial_velocities_follow_temperature():
    # one MD step with zero friction: kinetic energy ~ (3N/2) kT from the Maxwell-Boltzmann
    # draw (COM removed: 3N-3 dof). For 32 atoms, 93 dof: relative std sqrt(2/93) = 15%;
    # average over 8 seeds -> 5%; allow 4 sigma = 20%
    atoms = _cu()
    t_measured = []
    for seed in range(8):
        f = md_snapshots(atoms, EMT(), 300.0, n_frames=1, interval=1, friction=0.0, seed=seed)
        t_measured.append(f[0].get_kinetic_energy() / (1.5 * units.kB * (len(atoms) - 1)))
    assert np.mean(t_measured) == pytest.approx(300.0, rel=0.2)


# ---------------------------------------------------------------------------- normal modes
@pytest.fixture(scope="module")
def xtb_water() -> tuple[Atoms, XTBLabeler]:
    lab = XTBLabeler()
    h2o = molecule("H2O")
    h2o.calc = lab.as_calculator()
    BFGS(h2o, logfile=None).run(fmax=1e-4)
    h2o.calc = None
    return h2o, lab


def test_normal_mode_samples_equipartition(xtb_water):
    h2o, lab = xtb_water
    temperature = 20.0
    n = 500
    frames = normal_mode_samples(h2o, lab, n, temperature_K=temperature, seed=1)
    assert len(frames) == n and all(f.calc is None for f in frames)
    calc = lab.as_calculator()
    ref = h2o.copy()
    ref.calc = calc
    e0 = ref.get_potential_energy()
    rise = []
    for f in frames:
        f.calc = calc
        rise.append(f.get_potential_energy() - e0)
    rise = np.array(rise) / (units.kB * temperature)
    n_modes = 3 * len(h2o) - 6  # nonlinear molecule: 3 vibrational modes
    # classical equipartition: <E - E0> = (n_modes / 2) kT in the harmonic limit. The sum of
    # n_modes (kT/2) chi^2_1 variables has std kT sqrt(n_modes/2), so the standard error of
    # the mean is sqrt(n_modes/2/n) = 0.055 kT; at 20 K the xTB anharmonic shift is far
    # smaller (at 50 K it was measured ~ +0.06 kT). Tolerance: 3 standard errors.
    se = np.sqrt(n_modes / 2 / n)
    assert rise.mean() == pytest.approx(n_modes / 2, abs=3 * se)
    # the spread agrees with the harmonic prediction: the std of a sum of 3 chi^2_1 terms
    # (excess kurtosis 4) is estimated from n samples to sqrt((4 + 2) / (4 n)) = 5.5%;
    # allow 20% (3.6 sigma)
    assert rise.std() / np.sqrt(n) == pytest.approx(se, rel=0.20)
    again = normal_mode_samples(h2o, lab, 3, temperature_K=temperature, seed=1)
    for f, g in zip(frames[:3], again, strict=True):
        # same seed -> same frames; the Hessian is recomputed and tblite's OpenMP sums are
        # not bitwise reproducible, so compare to 1e-9 Å rather than bit for bit
        np.testing.assert_allclose(f.positions, g.positions, atol=1e-9, rtol=0)


def test_normal_mode_samples_keep_center_of_mass_and_orientation(xtb_water):
    h2o, lab = xtb_water
    frames = normal_mode_samples(h2o, lab, 20, temperature_K=300.0, seed=2)
    m = h2o.get_masses()
    for f in frames:
        d = f.positions - h2o.positions
        # rigid-body motions are projected out: no COM shift (mass-weighted sum = 0) and no
        # net angular displacement (Eckart condition sum m r0 x d = 0); 1e-10 float noise
        np.testing.assert_allclose((m[:, None] * d).sum(0), 0.0, atol=1e-10)
        r0 = h2o.positions - h2o.get_center_of_mass()
        np.testing.assert_allclose((m[:, None] * np.cross(r0, d)).sum(0), 0.0, atol=1e-10)


def test_normal_modes_of_a_linear_molecule_has_one_mode():
    n2 = Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]])
    n2.calc = EMT()
    BFGS(n2, logfile=None).run(fmax=1e-5)
    omega2, modes, n_rigid = normal_modes(n2, EMT())
    assert n_rigid == 5 and omega2.shape == (1,)  # 3N - 5 = 1 stretch
    # the stretch moves the two atoms oppositely along z (orthonormal mass-weighted vector)
    np.testing.assert_allclose(np.abs(modes[:, 0]), [0, 0, 2**-0.5, 0, 0, 2**-0.5], atol=1e-8)
    mu = n2.get_masses()[0] / 2  # reduced mass of N2
    k = omega2[0] * mu  # force constant along the bond, eV/Å^2
    n2.calc = EMT()
    d0 = n2.get_distance(0, 1)
    h = 1e-3
    e = []
    for dd in (-h, 0.0, h):
        x = n2.copy()
        x.calc = EMT()
        x.set_distance(0, 1, d0 + dd, fix=0.5)
        e.append(x.get_potential_energy())
    k_fd = (e[0] - 2 * e[1] + e[2]) / h**2
    # Vibrations uses delta = 0.01 Å central differences: O(delta^2) relative error ~1e-3
    assert k == pytest.approx(k_fd, rel=5e-3)


# ---------------------------------------------------------------------------- dimer scan
def test_dimer_scan_sets_distances_exactly():
    dimer = create_s22_system("Water_dimer")
    distances = [2.5, 3.0, 4.0, 6.0]
    frames = dimer_scan(dimer, [0, 1, 2], distances)
    m = dimer.get_masses()
    for d, f in zip(distances, frames, strict=True):
        ca = (m[:3, None] * f.positions[:3]).sum(0) / m[:3].sum()
        cb = (m[3:, None] * f.positions[3:]).sum(0) / m[3:].sum()
        assert np.linalg.norm(cb - ca) == pytest.approx(d, abs=1e-12)  # float rounding only
        assert f.info["scan_distance"] == d
        np.testing.assert_array_equal(f.positions[:3], dimer.positions[:3])  # A fixed
        # B moved rigidly: its internal distances are unchanged (1e-12, float rounding)
        np.testing.assert_allclose(
            f.get_all_distances()[3:, 3:], dimer.get_all_distances()[3:, 3:], atol=1e-12
        )
    # hydrogen-bond H...O scan via an atom pair: donor H2 (fragment A) ... acceptor O3 (B)
    pair_frames = dimer_scan(dimer, [0, 1, 2], [1.8, 2.2], pair=(2, 3))
    for d, f in zip([1.8, 2.2], pair_frames, strict=True):
        assert f.get_distance(2, 3) == pytest.approx(d, abs=1e-12)


def test_bad_arguments_raise_input_error():
    cu = _cu()
    h2o = molecule("H2O")
    dimer = create_s22_system("Water_dimer")
    with pytest.raises(InputError, match="n must be >= 1"):
        rattle(cu, 0)
    with pytest.raises(InputError, match="stdev"):
        rattle(cu, 2, stdev=-0.1)
    with pytest.raises(InputError, match="temperature_K"):
        md_snapshots(cu, EMT(), -5.0, 2)
    with pytest.raises(InputError, match="n_frames"):
        md_snapshots(cu, EMT(), 300.0, 0)
    with pytest.raises(InputError, match="calculator"):
        md_snapshots(cu, "emt", 300.0, 2)
    with pytest.raises(InputError, match="temperature_K"):
        normal_mode_samples(h2o, EMT(), 2, temperature_K=-1.0)
    with pytest.raises(InputError, match="n must be"):
        normal_mode_samples(h2o, EMT(), 0)
    with pytest.raises(InputError, match="no vibrational modes"):
        normal_mode_samples(Atoms("Cu", positions=[[0, 0, 0]]), EMT(), 2)
    with pytest.raises(InputError, match="out of range"):
        dimer_scan(dimer, [0, 1, 9], [3.0])
    with pytest.raises(InputError, match="fragment B is empty"):
        dimer_scan(dimer, range(6), [3.0])
    with pytest.raises(InputError, match=r"atoms 2 and 3 0.05 Å apart \(< 0.1 Å\)"):
        dimer_scan(dimer, [0, 1, 2], [0.05], pair=(2, 3))
    with pytest.raises(InputError, match="> 0"):
        dimer_scan(dimer, [0, 1, 2], [-1.0])
    with pytest.raises(InputError, match="pair"):
        dimer_scan(dimer, [0, 1, 2], [3.0], pair=(3, 0))


def test_quantum_normal_mode_samples_have_the_zero_point_spread(xtb_water):
    """quantum=True: the mass-weighted amplitude of mode k has variance (ħ/2ω_k)
    coth(βħω_k/2) — at 100 K the zero-point value ħ/2ω_k, 10–30× the classical kT/ω_k²
    for water's modes. 400 frames: the variance estimate's relative error is √(2/400) = 7%;
    tolerance 25% (3.5σ)."""
    from nnp_lab.data.samplers import normal_modes

    h2o, lab = xtb_water
    frames = normal_mode_samples(h2o, lab, 400, temperature_K=100.0, seed=4, quantum=True)
    omega2, modes, _ = normal_modes(h2o, lab.as_calculator())
    sq = np.sqrt(np.repeat(h2o.get_masses(), 3))
    amp = np.array([modes.T @ (sq * (f.positions - h2o.positions).ravel()) for f in frames])
    hbar = units._hbar * 1e10 / np.sqrt(units._e * units._amu)  # eV·Å·√amu/(eV/Å²amu)^½
    w = np.sqrt(omega2)
    x = hbar * w / (2 * units.kB * 100.0)
    expected = hbar / (2 * w) / np.tanh(x)
    np.testing.assert_allclose(amp.var(0), expected, rtol=0.25)
    assert np.all(expected > 10 * units.kB * 100.0 / omega2)
