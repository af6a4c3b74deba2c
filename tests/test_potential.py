"""Physics of the potential: forces, stress, invariances, linear scaling, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnp_lab
from nnp_lab import Potential
from nnp_lab.data.batch import Batch
from nnp_lab.errors import CheckpointError, SpeciesError


@pytest.fixture(scope="module")
def organic() -> Potential:
    torch.manual_seed(1)
    pot = Potential(species=["H", "C", "N", "O"], descriptor="ani1x", hidden=[32, 16]).double()
    # non-trivial statistics so that normalisation and scaling are exercised
    pot.feature_mean.uniform_(0.0, 0.2)
    pot.feature_std.uniform_(0.5, 2.0)
    pot.energy_scale.fill_(0.7)
    pot.self_energies.copy_(torch.tensor([-13.6, -1029.0, -1485.0, -2042.0], dtype=torch.float64))
    return pot


@pytest.fixture(scope="module")
def metal() -> Potential:
    torch.manual_seed(2)
    return Potential(species=["Cu", "Ag"], descriptor="metal", hidden=[16]).double()


def _cu_ag_cell(seed: int = 0) -> Atoms:
    a = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
    a.symbols[[1, 4]] = "Ag"
    a.set_cell(
        a.cell.array @ np.array([[1.0, 0.05, 0.0], [0.02, 1.0, 0.03], [0.0, -0.04, 1.0]]),
        scale_atoms=True,
    )
    a.rattle(0.08, seed=seed)
    return a


def test_forces_are_minus_energy_gradient(organic):
    """Central finite differences, h = 1e-5 Å in float64: truncation O(h²) ~ 1e-10 eV/Å.

    Self-energies (constants, thousands of eV) are zeroed so that the round-off of E
    (ulp × |E| / 2h) stays below the tolerance.
    """
    organic = Potential(config=organic.config).double()
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.1, seed=3)
    f = organic.predict(atoms)["forces"]
    h = 1e-5
    num = np.zeros_like(f)
    for a in range(len(atoms)):
        for c in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[a, c] += h
            m.positions[a, c] -= h
            num[a, c] = -(
                organic.predict(p, forces=False)["energy"]
                - organic.predict(m, forces=False)["energy"]
            ) / (2 * h)
    np.testing.assert_allclose(f, num, atol=1e-7, rtol=1e-6)


def test_periodic_forces_and_stress_match_finite_differences(metal):
    """Stress = (1/V) ∂E/∂ε (ASE convention) by central differences of a strained cell."""
    atoms = _cu_ag_cell()
    res = metal.predict(atoms, stress=True)
    h = 1e-5
    for a, c in ((0, 0), (3, 2), (5, 1)):
        p, m = atoms.copy(), atoms.copy()
        p.positions[a, c] += h
        m.positions[a, c] -= h
        num = -(metal.predict(p)["energy"] - metal.predict(m)["energy"]) / (2 * h)
        assert abs(res["forces"][a, c] - num) < 1e-7
    eps = 1e-6
    for k, m_ in ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)):
        s = np.zeros((3, 3))
        s[k, m_] += eps / 2
        s[m_, k] += eps / 2
        p, m = atoms.copy(), atoms.copy()
        p.set_cell(atoms.cell.array @ (np.eye(3) + s), scale_atoms=True)
        m.set_cell(atoms.cell.array @ (np.eye(3) - s), scale_atoms=True)
        num = (
            (metal.predict(p)["energy"] - metal.predict(m)["energy"])
            / (2 * eps)
            / atoms.get_volume()
        )
        assert abs(res["stress"][k, m_] - num) < 1e-8, (k, m_)


rotations = st.tuples(st.floats(-np.pi, np.pi), st.floats(-np.pi, np.pi), st.floats(-np.pi, np.pi))


def _rot(angles) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(angles=rotations, shift=st.tuples(*[st.floats(-50, 50)] * 3), seed=st.integers(0, 10_000))
def test_molecule_invariance_rotation_translation_permutation(organic, angles, shift, seed):
    """E invariant, F covariant; float64 round-off bound 1e-9 eV (sums of O(1e3) terms)."""
    atoms = molecule("CH3CONH2")
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    ref = organic.predict(atoms)
    rot = _rot(angles)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + np.asarray(shift)
    perm = np.arange(len(atoms))
    for z in set(atoms.numbers):  # shuffle atoms within each species
        idx = np.flatnonzero(atoms.numbers == z)
        perm[idx] = rng.permutation(idx)
    moved = moved[perm]
    out = organic.predict(moved)
    assert abs(out["energy"] - ref["energy"]) < 1e-9
    np.testing.assert_allclose(out["forces"], (ref["forces"] @ rot.T)[perm], atol=1e-9)


@SETTINGS
@given(angles=rotations, seed=st.integers(0, 10_000), wrap=st.tuples(*[st.integers(-2, 2)] * 3))
def test_periodic_invariance_rotation_images_and_cell_choice(metal, angles, seed, wrap):
    atoms = _cu_ag_cell(seed % 50)
    ref = metal.predict(atoms, stress=True)
    # any periodic image of an atom is the same crystal
    imaged = atoms.copy()
    imaged.positions[2] += np.asarray(wrap) @ atoms.cell.array
    out = metal.predict(imaged, stress=True)
    assert abs(out["energy"] - ref["energy"]) < 1e-9
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-9)
    # rotating atoms and cell together: E invariant, F and stress covariant
    rot = _rot(angles)
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=True)
    out = metal.predict(turned, stress=True)
    assert abs(out["energy"] - ref["energy"]) < 1e-9
    np.testing.assert_allclose(out["forces"], ref["forces"] @ rot.T, atol=1e-9)
    np.testing.assert_allclose(out["stress"], rot @ ref["stress"] @ rot.T, atol=1e-10)
    # another cell of the same lattice (a unimodular change of basis) and a 2x supercell
    m = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1]])
    skew = atoms.copy()
    skew.set_cell(m @ atoms.cell.array, scale_atoms=False)
    skew.wrap()
    assert abs(metal.predict(skew)["energy"] - ref["energy"]) < 1e-9
    sup = atoms.repeat((1, 2, 1))
    assert abs(metal.predict(sup)["energy"] - 2 * ref["energy"]) < 1e-8


def test_neighbor_count_per_atom_constant_as_box_grows():
    """O(N) neighbor lists: pairs per atom must not grow with the box (counts, not seconds)."""
    counts = []
    for n in (2, 4, 8):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n, n, n))
        batch = Batch.from_atoms(atoms, validate=False)
        pairs = batch.neighbors(6.0)
        counts.append(len(pairs) / len(atoms))
    assert counts[0] == counts[1] == counts[2] == 78  # fcc shells within 6 Å: 12+6+24+12+24


def test_batched_prediction_equals_one_by_one(organic):
    mols = [molecule(n) for n in ("H2O", "CH4", "NH3", "CH3OH")]
    together = organic.predict(mols)
    singles = [organic.predict(m) for m in mols]
    np.testing.assert_allclose(together["energy"], [s["energy"] for s in singles], atol=1e-10)
    np.testing.assert_allclose(
        together["forces"], np.concatenate([s["forces"] for s in singles]), atol=1e-10
    )


def test_save_load_identical_predictions(organic, tmp_path):
    atoms = molecule("CH3CH2OH")
    organic.save(tmp_path / "m.pt")
    loaded = nnp_lab.load(tmp_path / "m.pt")
    a, b = organic.predict(atoms), loaded.predict(atoms)
    assert a["energy"] == b["energy"]
    np.testing.assert_array_equal(a["forces"], b["forces"])
    assert loaded.metadata["model_hash"]
    assert loaded.config == organic.config


def test_float32_model_keeps_float64_self_energies(organic, tmp_path):
    """Self-energies of ~-2000 eV must survive a float32 model without losing meV."""
    single = Potential(config=organic.config)
    single.load_state_dict(organic.state_dict())
    single = single.float()
    assert single.self_energies.dtype == torch.float64
    torch.testing.assert_close(single.self_energies, organic.self_energies, rtol=0, atol=0)
    e64 = organic.predict(molecule("H2O"))["energy"]
    e32 = single.predict(molecule("H2O"))["energy"]
    assert abs(e64 - e32) < 1e-4  # network part in float32: ~1e-7 relative of O(1) eV


def test_checkpoint_for_other_species_is_refused(organic, tmp_path):
    organic.save(tmp_path / "m.pt")
    other = Potential(species=["H", "O"], descriptor="ani1x", hidden=[32, 16])
    with pytest.raises(SpeciesError, match=r"species \['H', 'C', 'N', 'O'\]"):
        other.load_weights(tmp_path / "m.pt")


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable nnp-lab model file"):
        nnp_lab.load(bad)


def test_summed_potential_is_exactly_the_sum(organic, tmp_path):
    """``summed_potential(a, b)`` (block-diagonal wider MLPs) gives E_a + E_b and F_a + F_b
    to float64 round-off (1e-10 eV: the sum is an identity, not a fit), survives
    save/load, and refuses networks of different depth."""
    from nnp_lab.errors import InputError
    from nnp_lab.models.combine import summed_potential

    torch.manual_seed(3)
    other = Potential(config=organic.config.model_copy(update={"hidden": [8, 4]})).double()
    other.feature_mean.copy_(organic.feature_mean)
    other.feature_std.copy_(organic.feature_std)
    other.energy_scale.fill_(0.05)
    other.self_energies.fill_(0.25)
    both = summed_potential(organic, other)
    assert both.config.hidden == [40, 20]
    atoms = [molecule("CH3CH2OH"), molecule("CH3CONH2")]
    atoms[0].rattle(0.05, seed=1)
    batch = Batch.from_atoms(atoms, dtype=torch.float64)
    ra, rb, rs = (p(batch, forces=True) for p in (organic, other, both))
    assert torch.allclose(rs["energy"], ra["energy"] + rb["energy"], rtol=0, atol=1e-10)
    assert torch.allclose(rs["forces"], ra["forces"] + rb["forces"], rtol=0, atol=1e-10)
    both.save(str(tmp_path / "sum.pt"))
    again = nnp_lab.load(str(tmp_path / "sum.pt")).double()
    assert torch.allclose(again(batch)["energy"], rs["energy"], rtol=0, atol=1e-10)
    shallow = Potential(config=organic.config.model_copy(update={"hidden": [8]})).double()
    with pytest.raises(InputError, match="depth"):
        summed_potential(organic, shallow)
