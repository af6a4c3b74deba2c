"""Ring-polymer MD (nnp_lab.dynamics.pimd) against exact results.

Harmonic oscillators: the P-bead mean energy is known in closed form
(⟨E⟩_P = (1/β) Σ_k ω²/(ω² + ω_k²), see model_systems.harmonic_energy_exact) and tends to
½ħω coth(βħω/2). The N atoms of the test are independent oscillators, so the spread of
their time-averaged energies gives an honest standard error of the mean (no
autocorrelation guesswork); the bound is 3σ plus the integrator's known O((ωΔt)²) bias
((ωΔt)²/4 ≈ 4e-4 relative here, far below σ).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
from ase import Atoms, units
from ase.cluster import Icosahedron
from ase.md.verlet import VelocityVerlet

from nnp_lab.dynamics.calculator import NNPCalculator
from nnp_lab.dynamics.pimd import PIMDConfig, RingPolymer, run_pimd, with_isotope
from nnp_lab.dynamics.pimd.beads import CalculatorBeads, ModelBeads
from nnp_lab.dynamics.pimd.model_systems import (
    DoubleWell,
    Harmonic,
    harmonic_energy_exact,
    harmonic_energy_quantum,
    harmonic_gyration_exact,
)
from nnp_lab.dynamics.pimd.normal_modes import (
    HBAR,
    free_step_coefficients,
    mode_frequencies,
    normal_mode_matrix,
    ring_polymer_frequency,
)
from nnp_lab.dynamics.pimd.rpmd import DEUTERIUM_MASS
from nnp_lab.errors import InputError

HW = 0.1  # ħω, eV
MASS = 1.0  # amu
OMEGA = HW / HBAR
K = MASS * OMEGA**2


def oscillators(n: int) -> Atoms:
    atoms = Atoms("H" * n, positions=np.zeros((n, 3)))
    atoms.set_masses([MASS] * n)
    return atoms


def per_atom_energy(ring: RingPolymer) -> np.ndarray:
    """Centroid-virial energy estimator of each (independent) oscillator, eV."""
    q, f, p_ = ring.q, ring.results["forces"], ring.n_beads
    v = (0.5 * K * (q**2).sum(-1)).mean(0)
    dev = q - q.mean(0)
    kcv = 1.5 / ring.beta - (dev * f).sum(-1).sum(0) / (2 * p_)
    return (v + kcv).numpy()


def sample_energy(beta_hw: float, n_beads: int, thermostat: str = "pile_l", **kw):
    """Mean energy per degree of freedom (in ħω) and its standard error."""
    n_atoms, n_steps, every = 64, 6000, 5
    temperature = HW / (beta_hw * units.kB)
    ring = RingPolymer(
        oscillators(n_atoms),
        Harmonic(K),
        PIMDConfig(
            n_beads=n_beads,
            temperature_K=temperature,
            timestep_fs=0.25,
            thermostat=thermostat,
            tau_centroid_fs=1 / OMEGA / units.fs,
            seed=n_beads,
            **kw,
        ),
    )
    ring.step(n_steps // 5)  # equilibrate
    acc = np.zeros(n_atoms)
    n = 0
    for _ in range(n_steps // every):
        ring.step(every)
        e = per_atom_energy(ring)
        assert e.sum() == pytest.approx(ring.estimators()["energy_virial"], rel=1e-10)
        acc += e
        n += 1
    per_atom = acc / n / (3 * HW)
    return per_atom.mean(), per_atom.std(ddof=1) / math.sqrt(n_atoms)


def test_normal_modes_diagonalise_the_ring_springs():
    """Cᵀ A C = diag(ω_k²/ω_P²) for the ring's spring matrix A (2 on the diagonal, −1 to the
    cyclic neighbours); C orthogonal (to 1e-12)."""
    for p in (1, 2, 5, 8, 32):
        c = normal_mode_matrix(p)
        assert torch.allclose(c.T @ c, torch.eye(p, dtype=c.dtype), atol=1e-12)
        a = 2 * torch.eye(p, dtype=c.dtype) - torch.roll(torch.eye(p, dtype=c.dtype), 1, 0)
        a = a - torch.roll(torch.eye(p, dtype=c.dtype), -1, 0)
        if p == 1:
            a = torch.zeros((1, 1), dtype=c.dtype)
        if p == 2:
            a = torch.tensor([[2.0, -2.0], [-2.0, 2.0]], dtype=c.dtype)
        w = mode_frequencies(p, 300.0) / ring_polymer_frequency(p, 300.0)
        assert torch.allclose(c.T @ a @ c, torch.diag(w**2), atol=1e-10)


def test_finite_p_harmonic_formula_limits():
    """P = 1 gives the classical k_BT; large P gives ½ħω coth(βħω/2) (to 1e-4 at P = 2048)."""
    for x in (1.0, 4.0, 10.0):
        assert harmonic_energy_exact(x, 1) == pytest.approx(1 / x, rel=1e-12)
        values = [harmonic_energy_exact(x, p) for p in (4, 16, 64, 2048)]
        assert np.all(np.diff(values) > 0)  # converges from below
        assert values[-1] == pytest.approx(harmonic_energy_quantum(x), rel=1e-4)


@pytest.mark.parametrize(
    "beta_hw, n_beads", [(1.0, 1), (1.0, 4), (4.0, 8), (10.0, 1), (10.0, 16), (10.0, 32)]
)
def test_harmonic_oscillator_energy_matches_exact_finite_p(beta_hw, n_beads):
    mean, err = sample_energy(beta_hw, n_beads)
    exact = float(harmonic_energy_exact(beta_hw, n_beads))
    assert abs(mean - exact) < 3 * err + 1e-3 * exact, (mean, err, exact)
    if n_beads == 32:  # converging to ½ħω coth(βħω/2): the P = 32 value is 4.5 % below
        assert mean == pytest.approx(harmonic_energy_quantum(beta_hw), rel=0.05)


def test_pile_g_and_cayley_sample_the_same_ensemble():
    """PILE-G (Bussi centroid) and the Cayley free step: same exact value at βħω = 4, P = 8
    (the Cayley step's own sampling bias at ω_k Δt ≤ 0.7 is below 1 %: Korol et al. 2019)."""
    exact = float(harmonic_energy_exact(4.0, 8))
    mean, err = sample_energy(4.0, 8, thermostat="pile_g")
    assert abs(mean - exact) < 3 * err + 1e-3 * exact
    mean, err = sample_energy(4.0, 8, free_step="cayley")
    assert abs(mean - exact) < 3 * err + 1e-2 * exact


def test_ring_polymer_conserves_its_hamiltonian_without_thermostat():
    """Double well, light mass, P = 16, no thermostat: the ring-polymer Hamiltonian
    fluctuates by ≤ 1e-3 of its thermal scale (P·N_dof·k_BT) and does not drift (a
    symplectic integrator: the second half's mean equals the first's to 2e-4)."""
    atoms = oscillators(8)
    cfg = PIMDConfig(n_beads=16, temperature_K=200.0, timestep_fs=0.1, thermostat="none")
    ring = RingPolymer(atoms, DoubleWell(0.2, 0.4), cfg)
    ds = run_pimd(ring, 4000, sample_every=10, show_progress=False)
    h = ds["hamiltonian"].values
    scale = 16 * 24 * units.kB * 200.0
    assert np.abs(h - h[0]).max() < 1e-3 * scale
    half = len(h) // 2
    assert abs(h[half:].mean() - h[:half].mean()) < 2e-4 * scale
    # with a thermostat the Hamiltonian plus the removed heat is conserved instead
    ring = RingPolymer(atoms, DoubleWell(0.2, 0.4), cfg.model_copy(update={"thermostat": "pile_l"}))
    ds = run_pimd(ring, 2000, sample_every=10, show_progress=False)
    assert np.ptp(ds["hamiltonian"].values) > 1e-2 * scale
    assert np.ptp(ds["conserved"].values) < 2e-3 * scale


def test_one_bead_without_thermostat_is_plain_velocity_verlet(trained_cu):
    """P = 1, no thermostat, the nnp-lab potential as one batch: the trajectory equals ASE's
    VelocityVerlet with the same potential to round-off (1e-9 Å after 50 steps)."""
    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.05, seed=1)
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(0, 0.3, (len(atoms), 3)))
    ring = RingPolymer(
        atoms,
        trained_cu,
        PIMDConfig(n_beads=1, temperature_K=300.0, timestep_fs=2.0, thermostat="none"),
        momenta="atoms",
    )
    ring.step(50)
    ref = atoms.copy()
    ref.calc = NNPCalculator(trained_cu)
    VelocityVerlet(ref, 2.0 * units.fs).run(50)
    assert np.abs(ring.q[0].numpy() - ref.positions).max() < 1e-9
    assert np.abs(ring.p[0].numpy() - ref.get_momenta()).max() < 1e-9


def test_bead_batch_equals_bead_by_bead(trained_cu):
    """All P beads in one batch give the energies and forces of P separate calculator calls."""
    atoms = Icosahedron("Cu", 2)
    q = torch.as_tensor(atoms.positions).expand(6, -1, -1).clone()
    q += 0.05 * torch.randn(q.shape, generator=torch.Generator().manual_seed(0), dtype=q.dtype)
    batched = ModelBeads(trained_cu, atoms, 6)(q)
    single = CalculatorBeads(NNPCalculator(trained_cu), atoms)(q)
    assert torch.allclose(batched["energy"], single["energy"], atol=1e-8)
    assert torch.allclose(batched["forces"], single["forces"], atol=1e-8)


def test_verlet_skin_reuses_neighbors_without_changing_the_trajectory(trained_cu):
    """The bead evaluator's Verlet list (cutoff + 0.5 Å, rebuilt after a 0.25 Å move)
    gives the trajectory of a list rebuilt every step: pairs beyond the cutoff add exactly
    zero, so positions agree to round-off (1e-9 Å after 60 steps) with fewer rebuilds."""
    atoms = Icosahedron("Cu", 2)
    cfg = PIMDConfig(n_beads=4, temperature_K=600.0, timestep_fs=2.0, seed=5)
    skin = ModelBeads(trained_cu, atoms, 4, skin=0.5)
    every = ModelBeads(trained_cu, atoms, 4, skin=0.0)
    a = RingPolymer(atoms, skin, cfg)
    b = RingPolymer(atoms, every, cfg)
    a.step(60)
    b.step(60)
    assert np.abs(a.q.numpy() - b.q.numpy()).max() < 1e-9
    assert every.rebuilds == 61 and 1 < skin.rebuilds < 61
    with pytest.raises(InputError, match="skin"):
        ModelBeads(trained_cu, atoms, 4, skin=-1.0)


def test_killed_run_resumes_bit_for_bit(tmp_path):
    """A run stopped after its first checkpoint and called again ends exactly where an
    uninterrupted run ends (same samples, same final beads)."""
    atoms = oscillators(4)
    cfg = PIMDConfig(n_beads=4, temperature_K=300.0, timestep_fs=0.5, seed=3)
    full = run_pimd(
        RingPolymer(atoms, Harmonic(K), cfg),
        300,
        sample_every=10,
        positions_every=5,
        show_progress=False,
    )

    class Stop(Exception):
        pass

    def stop(event):
        if event["step"] >= 100:
            raise Stop

    out = tmp_path / "run.nc"
    with pytest.raises(Stop):
        run_pimd(
            RingPolymer(atoms, Harmonic(K), cfg),
            300,
            sample_every=10,
            positions_every=5,
            out=out,
            checkpoint_every=100,
            progress=stop,
            show_progress=False,
        )
    assert (tmp_path / "run.nc.partial.nc").exists() and not out.exists()
    resumed = run_pimd(
        RingPolymer(atoms, Harmonic(K), cfg),
        300,
        sample_every=10,
        positions_every=5,
        out=out,
        checkpoint_every=100,
        show_progress=False,
    )
    assert out.exists() and not (tmp_path / "run.nc.partial.nc").exists()
    for name in ("energy_virial", "hamiltonian", "time", "radius_of_gyration", "bead_positions"):
        np.testing.assert_array_equal(resumed[name].values, full[name].values)
    # a checkpoint of other settings is refused
    with pytest.raises(Stop):
        run_pimd(
            RingPolymer(atoms, Harmonic(K), cfg),
            300,
            out=tmp_path / "c.nc",
            checkpoint_every=100,
            progress=stop,
            show_progress=False,
        )
    other = cfg.model_copy(update={"temperature_K": 400.0})
    with pytest.raises(InputError, match="other settings"):
        run_pimd(
            RingPolymer(atoms, Harmonic(K), other), 300, out=tmp_path / "c.nc", show_progress=False
        )


def test_isotope_swap_shrinks_the_ring_as_the_exact_harmonic_result():
    """H → D by index in one run: ⟨R_g²⟩ of each isotope's rings against the exact P-bead
    value Σ_{k≥1} 3 / (β m (ω² + ω_k²)) (same force constant, so ω_D = ω_H/√2); bound 3σ
    from the spread over the 16 independent atoms of each kind."""
    atoms = oscillators(32)
    heavy = with_isotope(atoms, list(range(16)))
    assert np.allclose(heavy.get_masses()[:16], DEUTERIUM_MASS)
    assert np.allclose(heavy.get_masses()[16:], MASS)
    beta_hw, p_ = 10.0, 32
    cfg = PIMDConfig(
        n_beads=p_, temperature_K=HW / (beta_hw * units.kB), timestep_fs=0.25, tau_centroid_fs=50.0
    )
    ds = run_pimd(RingPolymer(heavy, Harmonic(K), cfg), 5000, sample_every=10, show_progress=False)
    rg2 = (ds["radius_of_gyration"].values[100:] ** 2).mean(0)
    for sel, mass in ((slice(0, 16), DEUTERIUM_MASS), (slice(16, 32), MASS)):
        omega = math.sqrt(K / mass)
        exact = harmonic_gyration_exact(beta_hw * omega / OMEGA, p_) * HBAR / (mass * omega)
        err = rg2[sel].std(ddof=1) / 4.0
        assert abs(rg2[sel].mean() - exact) < 3 * err + 1e-3 * exact, (mass, rg2[sel].mean(), exact)


def test_bad_input_is_refused():
    atoms = oscillators(2)
    with pytest.raises(ValueError, match="thermostat"):
        PIMDConfig(n_beads=4, temperature_K=300.0, thermostat="nose")
    with pytest.raises(ValueError, match="free_step"):
        PIMDConfig(n_beads=4, temperature_K=300.0, free_step="leapfrog")
    with pytest.raises(ValueError):
        PIMDConfig(n_beads=0, temperature_K=300.0)
    with pytest.raises(InputError, match="shape"):
        RingPolymer(
            atoms,
            Harmonic(K),
            {"n_beads": 4, "temperature_K": 300.0},
            positions=np.zeros((3, 2, 3)),
        )
    with pytest.raises(InputError, match="isotope index"):
        with_isotope(atoms, [5])
    with pytest.raises(InputError, match="potential must be"):
        RingPolymer(atoms, 42, {"n_beads": 4, "temperature_K": 300.0})
    with pytest.raises(InputError, match="one of"):
        free_step_coefficients(torch.zeros(2), torch.ones(2), 1.0, "euler")


def test_pimd_runs_as_a_lab_job(tmp_path):
    """A ``pimd`` job (YAML config: a water molecule, the shipped water committee, O–D
    isotopes) runs through the job manager's detached worker, reports progress and writes
    the xarray result; a config naming a non-hydrogen as deuterium fails with the reason."""
    import time

    import nbformat
    import yaml
    from ase.build import molecule
    from ase.io import write
    from nbclient import NotebookClient

    from nnp_lab.apps.hbond.train import RESOURCES
    from nnp_lab.jobs.runner import JobManager
    from nnp_lab.server.notebooks import job_notebook

    water = molecule("H2O")
    water.center(vacuum=6.0)
    water.pbc = True
    write(tmp_path / "water.xyz", water)
    (tmp_path / "water.pt").write_bytes((RESOURCES / "water_committee.pt").read_bytes())
    config = {
        "structure": "water.xyz",
        "model": "water.pt",
        "pimd": {"n_beads": 4, "temperature_K": 300.0, "timestep_fs": 0.25},
        "steps": 40,
        "sample_every": 5,
        "positions_every": 2,
        "checkpoint_every": 20,
        "deuterium": [1, 2],
    }
    (tmp_path / "pimd.yaml").write_text(yaml.safe_dump(config))
    mgr = JobManager(tmp_path / "state" / "jobs.sqlite", tmp_path)
    job = mgr.submit({"kind": "pimd", "config": "pimd.yaml", "out": "p", "device": "cpu"})
    bad = mgr.submit({"kind": "pimd", "config": {**config, "deuterium": [0]}, "out": "q"})
    deadline = time.time() + 300
    while any(mgr.store.get(j["id"])["status"] not in ("completed", "failed") for j in (job, bad)):
        assert time.time() < deadline
        mgr.dispatch()
        time.sleep(0.3)
    done = mgr.store.get(job["id"])
    assert done["status"] == "completed", done["error"]
    ds = xr.open_dataset(tmp_path / done["result"]["result"])
    assert ds.sizes["frame"] == 9 and ds.sizes["bead"] == 4
    np.testing.assert_allclose(ds["masses"].values[1:], DEUTERIUM_MASS)
    steps = [e["payload"]["step"] for e in mgr.store.events(job["id"]) if e["step"] == "pimd"]
    assert steps == [20, 40]
    notebook = tmp_path / job_notebook(done, tmp_path)  # "Open in notebook": the template runs
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(
        nb, timeout=120, resources={"metadata": {"path": str(notebook.parent)}}
    ).execute()
    failed = mgr.store.get(bad["id"])
    assert failed["status"] == "failed" and "not H" in failed["error"]


def test_ipi_driver_and_benchmark_run(tmp_path):
    """The benchmark's i-PI driver gives i-PI the committee's own bead energies and forces
    (after i-PI's atomic units), single and batched; the benchmark script runs end to end
    (tiny sizes) and reports every column."""
    import json

    from ase.io import write
    from ipi.utils.units import unit_to_internal

    from benchmarks.ipi_nnp_driver import NNPLabDriver
    from benchmarks.pimd_beads import MODEL, cluster, main

    atoms = cluster()
    write(tmp_path / "c.xyz", atoms)
    driver = NNPLabDriver(str(tmp_path / "c.xyz"), str(MODEL))
    bohr = unit_to_internal("length", "angstrom", 1.0)
    pos = [atoms.positions * bohr, (atoms.positions + 0.02) * bohr]
    batched = driver([np.eye(3)] * 2, pos)
    single = driver(np.eye(3), pos[1])
    ref = ModelBeads(driver.model, atoms, 1)(torch.as_tensor(atoms.positions + 0.02)[None])
    assert single[0] == pytest.approx(batched[1][0], abs=1e-7)
    assert single[0] == pytest.approx(
        unit_to_internal("energy", "electronvolt", float(ref["energy"][0])), abs=1e-7
    )
    np.testing.assert_allclose(
        single[1], unit_to_internal("force", "ev/ang", ref["forces"][0].numpy()), atol=1e-7
    )
    report = main(
        ["--beads", "2", "--steps", "3", "--condensed-beads", "2", "--results", str(tmp_path)]
    )
    row = report["molecular"]["beads"][2]
    assert {"step_s", "separate_calls_s", "ipi_step_s", "ipi_batched_step_s"} <= set(row)
    assert json.loads(next(tmp_path.glob("pimd-beads-*.json")).read_text())["molecular"]
