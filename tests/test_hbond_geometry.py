"""Geometric H-bond analysis: the S22 dimers' H-bonds, invariances, periodic images."""

from __future__ import annotations

import numpy as np
import pytest
from ase.collections import s22
from scipy.spatial.transform import Rotation

from nnp_lab.apps.hbond.geometry import find_hbonds, hbond_table, molecules
from nnp_lab.errors import InputError


def test_s22_water_dimer_geometry():
    """S22's water dimer (Jurečka et al. 2006, CCSD(T)/cc-pVQZ geometry): one H-bond,
    O···O 2.910 Å; a nearly linear O–H···O; the O···O axis ≈ 57° out of the acceptor's
    H–O–H plane, within 10° of the tetrahedral lone-pair direction (54.7°)."""
    bonds = find_hbonds(s22["Water_dimer"])
    assert len(bonds) == 1
    b = bonds[0]
    assert (b.donor, b.hydrogen, b.acceptor) == (0, 2, 3)
    assert b.r_da == pytest.approx(2.9104, abs=1e-4)
    assert b.r_ha == pytest.approx(b.r_da - 0.96, abs=0.02)  # O–H 0.96 Å, near-linear
    assert 170 < b.theta_dha <= 180
    assert abs(b.acceptor_out_of_plane - 54.7) < 10


def test_double_hbonds_of_cyclic_dimers_and_none_in_methane():
    """Formic acid and formamide dimers are cyclic: two equivalent H-bonds, in the plane
    of the (planar) acceptor; the methane dimer has none."""
    for name, r_da in (("Formic_acid_dimer", 2.665), ("Formamide_dimer", 2.860)):
        bonds = find_hbonds(s22[name])
        assert len(bonds) == 2
        assert bonds[0].r_da == pytest.approx(bonds[1].r_da, abs=1e-6)
        assert bonds[0].r_da == pytest.approx(r_da, abs=1e-3)
        assert all(b.acceptor_out_of_plane < 1.0 for b in bonds)
    assert find_hbonds(s22["Methane_dimer"]) == []


def test_invariant_under_rotation_and_translation():
    a = s22["Water_dimer"]
    ref = hbond_table(a)
    b = a.copy()
    shift = np.array([4.0, -2.0, 7.5])
    b.positions = Rotation.from_rotvec([0.3, -1.1, 0.7]).apply(b.positions) + shift
    got = hbond_table(b)
    for k in ("r_da", "r_ha", "theta_dha", "acceptor_out_of_plane"):
        np.testing.assert_allclose(got[k], ref[k], atol=1e-9)


def test_periodic_images_and_molecules_across_the_boundary():
    """The dimer in a 10 Å box, shifted so that the H-bond (and a molecule) cross the
    boundary: same bond, found through the minimum image."""
    a = s22["Water_dimer"]
    ref = find_hbonds(a)[0]
    b = a.copy()
    b.cell = [10.0, 10.0, 10.0]
    b.pbc = True
    b.positions += 10.0 - b.positions[2] + [0.3, 0.3, 0.3]  # the bonding H just inside 0
    b.wrap()
    assert len(set(molecules(b))) == 2
    got = find_hbonds(b)
    assert len(got) == 1
    assert got[0].r_da == pytest.approx(ref.r_da, abs=1e-9)
    assert got[0].theta_dha == pytest.approx(ref.theta_dha, abs=1e-9)


def test_criteria_cut_the_bond_off():
    a = s22["Water_dimer"]
    assert find_hbonds(a, r_da_max=2.8) == []
    assert find_hbonds(a, angle_min=175.0) == []
    with pytest.raises(InputError, match="r_ha_max"):
        find_hbonds(a, r_ha_max=4.0, r_da_max=3.5)
