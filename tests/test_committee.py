"""One-pass committees equal their members evaluated one by one; chunking changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from nnp_lab import Potential
from nnp_lab.models.committee import Committee


def _members(k: int, species=("H", "C", "N", "O"), descriptor="ani1x", hidden=(16, 8)) -> list:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        pot = Potential(species=list(species), descriptor=descriptor, hidden=list(hidden)).double()
        # members differ in statistics too, as bootstrap members do
        pot.feature_mean.uniform_(0.0, 0.3)
        pot.feature_std.uniform_(0.5, 2.0)
        pot.energy_scale.fill_(0.5 + 0.1 * seed)
        pot.self_energies.uniform_(-50.0, -1.0)
        out.append(pot)
    return out


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_committee_matches_members_one_by_one(backend):
    """float64: stacked GEMMs reorder sums only, 1e-10 eV / eV/Å agreement; the members'
    forces come from plain autograd through the torch reference (``create_graph``)."""
    from nnp_lab.data.batch import Batch

    members = _members(4)
    com = Committee(members)
    com.backend = backend
    atoms = [molecule("CH3CH2OH"), molecule("CH3CONH2")]
    out = com.predict(atoms)
    singles = []
    for m in members:
        m.descriptor.backend = "torch"
        res = m(Batch.from_atoms(atoms), create_graph=True)
        singles.append({k: v.detach().numpy() for k, v in res.items()})
    for k, s in enumerate(singles):
        np.testing.assert_allclose(out["energy"][k], s["energy"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(out["forces"][k], s["forces"], rtol=0, atol=1e-10)
    e = np.stack([s["energy"] for s in singles])
    f = np.stack([s["forces"] for s in singles])
    np.testing.assert_allclose(out["energy_mean"], e.mean(0), atol=1e-10)
    np.testing.assert_allclose(out["energy_std"], e.std(0), atol=1e-10)
    np.testing.assert_allclose(out["force_spread"], np.linalg.norm(f.std(0), axis=-1), atol=1e-10)


def test_committee_stress_and_chunking_on_a_periodic_box():
    members = _members(3, species=("Cu",), descriptor="metal")
    com = Committee(members)
    from nnp_lab.data.batch import Batch

    atoms = bulk("Cu", "fcc", a=3.65, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    whole = com(Batch.from_atoms(atoms), stress=True, chunk_atoms=10**6)
    chunked = com(Batch.from_atoms(atoms), stress=True, chunk_atoms=5)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(whole[key], chunked[key], rtol=1e-12, atol=1e-12)
    ref = members[1].predict(atoms, stress=True)
    np.testing.assert_allclose(whole["stress"][1, 0].numpy(), ref["stress"], atol=1e-12)


def test_single_potential_chunking_is_exact():
    torch.manual_seed(0)
    pot = Potential(species=["Cu"], descriptor="metal", hidden=[8]).double()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 2, 2))
    atoms.rattle(0.05, seed=1)
    from nnp_lab.data.batch import Batch

    a = pot(Batch.from_atoms(atoms), stress=True, chunk_atoms=7)
    b = pot(Batch.from_atoms(atoms), stress=True, chunk_atoms=10**6)
    for key in ("energy", "forces", "stress", "atomic_energies"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-12)


def test_committee_save_load_and_mismatch(tmp_path):
    members = _members(2)
    com = Committee(members)
    com.save(tmp_path / "c.pt")
    back = Committee.load(tmp_path / "c.pt")
    m = molecule("H2O")
    np.testing.assert_array_equal(back.predict(m)["energy"], com.predict(m)["energy"])
    torch.manual_seed(0)
    other = Potential(species=["H", "O"], descriptor="ani1x", hidden=[16, 8]).double()
    with pytest.raises(ValueError, match="member 1 has a different model config"):
        Committee([members[0], other])


def test_absent_species_columns_are_skipped_exactly():
    """A water cluster evaluated by an H, C, N, O committee: the first layer and ∂E/∂G use
    only the features of H and O (the others are exactly zero), with identical results."""
    from nnp_lab.data.batch import Batch

    members = _members(3)
    com = Committee(members)
    params = members[0].descriptor.params
    cols = params.feature_columns((0, 3))
    assert len(cols) == 2 * 16 + 3 * 32  # radial H, O; angular HH, HO, OO
    atoms = molecule("H2O")
    other = molecule("H2O")
    other.translate([2.9, 0.2, 0.1])
    atoms += other
    out = com.predict(atoms)
    for k, m in enumerate(members):
        m.descriptor.backend = "torch"
        ref = m(Batch.from_atoms(atoms), create_graph=True)
        np.testing.assert_allclose(out["energy"][k], ref["energy"].detach(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(out["forces"][k], ref["forces"].detach(), rtol=0, atol=1e-10)
