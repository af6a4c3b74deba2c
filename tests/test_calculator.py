"""The ASE calculator: ase.md, ase.optimize and ase.mep.NEB work unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import add_adsorbate, bulk, fcc111
from ase.calculators.fd import calculate_numerical_stress
from ase.constraints import FixAtoms
from ase.md.verlet import VelocityVerlet
from ase.mep import NEB
from ase.optimize import BFGS, FIRE

from nnp_lab import NNPCalculator, Potential


@pytest.fixture(scope="module")
def pot() -> Potential:
    torch.manual_seed(5)
    return Potential(species=["Cu"], descriptor="metal", hidden=[16]).double()


def test_properties_and_numerical_stress(pot):
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=1)
    atoms.calc = NNPCalculator(pot)
    e = atoms.get_potential_energy()
    assert e == pytest.approx(atoms.get_potential_energies().sum(), abs=1e-10)
    assert np.abs(atoms.get_forces().sum(axis=0)).max() < 1e-10  # Newton's third law
    num = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_stress(), num, atol=1e-8)  # central differences, O(d²)


def test_nve_md_conserves_energy(pot):
    """Velocity Verlet at 1 fs: total energy fluctuates but does not drift (smooth E)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.calc = NNPCalculator(pot)
    rng = np.random.default_rng(0)
    atoms.set_velocities(rng.normal(0, 0.02, (len(atoms), 3)))
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    etot = []
    dyn.attach(lambda: etot.append(atoms.get_total_energy()), interval=5)
    dyn.run(100)
    assert np.ptp(etot) / len(atoms) < 1e-3  # < 1 meV/atom over 100 fs


def test_optimizer_reaches_force_tolerance(trained_cu):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=2)
    atoms.calc = NNPCalculator(trained_cu)
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=200)
    assert np.abs(atoms.get_forces()).max() < 0.01


def test_neb_adatom_hop(trained_cu):
    """Climbing-image NEB between two equivalent fcc sites of Cu(111): barrier ≥ 0 and
    equal end energies (symmetry)."""
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    add_adsorbate(slab, "Cu", 2.0, "fcc")
    slab.set_constraint(FixAtoms(indices=list(range(4))))
    initial = slab.copy()
    final = slab.copy()
    final.positions[-1] += slab.cell[0] / 2
    pot = trained_cu
    for end in (initial, final):
        end.calc = NNPCalculator(pot)
        FIRE(end, logfile=None).run(fmax=0.02, steps=300)
    images = [initial] + [initial.copy() for _ in range(3)] + [final]
    for im in images[1:-1]:
        im.calc = NNPCalculator(pot)
    neb = NEB(images, climb=True, method="improvedtangent")
    neb.interpolate()
    FIRE(neb, logfile=None).run(fmax=0.05, steps=300)
    energies = [im.get_potential_energy() for im in images]
    assert max(energies) >= energies[0] - 1e-6
    assert energies[0] == pytest.approx(energies[-1], abs=5e-3)  # equivalent sites


def test_calculator_from_file_and_float32(pot, tmp_path):
    pot.save(tmp_path / "cu.pt")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.calc = NNPCalculator(tmp_path / "cu.pt", dtype="float32")
    e32 = atoms.get_potential_energy()
    atoms.calc = NNPCalculator(pot)
    assert e32 == pytest.approx(atoms.get_potential_energy(), abs=1e-4)
    assert pot.dtype == torch.float64  # the caller's model was not converted
