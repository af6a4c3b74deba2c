"""Datasets: netCDF round trip, ase files, splits, subsets, failed labels kept."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from nnp_lab import Dataset
from nnp_lab.data.dataset import STATUS_FAILED


def test_netcdf_roundtrip_is_exact(cu_dataset, tmp_path):
    path = tmp_path / "cu.nc"
    cu_dataset.save(path)
    back = Dataset.read(path)
    assert len(back) == len(cu_dataset)
    for k in (0, 7, len(back) - 1):
        a, b = cu_dataset[k], back[k]
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        assert (a.pbc == b.pbc).all()
    assert back.xr["energy"].attrs["units"] == "eV"
    assert back.xr.attrs["content_hash"] == cu_dataset.content_hash()


def test_read_extxyz_with_labels(tmp_path):
    frames = []
    for k in range(4):
        m = molecule("CH4")
        m.rattle(0.05, seed=k)
        m.calc = EMT()
        m.get_forces()
        frames.append(m)
    write(tmp_path / "ch4.extxyz", frames)
    ds = Dataset.read(tmp_path / "ch4.extxyz")
    assert len(ds) == 4 and ds.species == ["H", "C"]
    assert ds.summary()["labelled"] == 4
    np.testing.assert_allclose(
        ds[2].get_forces(), frames[2].get_forces(), atol=1e-6
    )  # extxyz text precision


def test_split_is_reproducible_and_disjoint(cu_dataset):
    a = [s.xr["energy"].values for s in cu_dataset.split((0.5, 0.25, 0.25), seed=7)]
    b = [s.xr["energy"].values for s in cu_dataset.split((0.5, 0.25, 0.25), seed=7)]
    c = [s.xr["energy"].values for s in cu_dataset.split((0.5, 0.25, 0.25), seed=8)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert sum(len(x) for x in a) == len(cu_dataset)
    assert len(np.intersect1d(a[0], a[1])) == 0


def test_subset_concat_and_failed_structures_kept(cu_dataset):
    sub = cu_dataset.subset([5, 1])
    assert sub[0].get_potential_energy() == cu_dataset[5].get_potential_energy()
    failed = molecule("H2O")
    failed.info.update(status=STATUS_FAILED, error="SCF not converged", method="PySCF/HF/def2-SVP")
    both = Dataset.concat([sub, Dataset.from_atoms([failed])])
    assert len(both) == 3
    assert both.summary()["failed"] == 1
    assert both[2].info["error"] == "SCF not converged"
    assert len(both.labelled()) == 2  # training skips it, the record keeps it
    np.testing.assert_array_equal(both[1].positions, cu_dataset[1].positions)


def test_index_errors(cu_dataset):
    with pytest.raises(IndexError):
        cu_dataset[len(cu_dataset)]
    with pytest.raises(IndexError):
        cu_dataset.subset([10_000])


def test_concat_fills_variables_only_later_parts_have(cu_dataset):
    """The first part lacks ``info_uncertainty``: it is filled with NaN there."""
    extra = cu_dataset[0]
    extra.info["uncertainty"] = 0.25
    both = Dataset.concat([cu_dataset.subset([1, 2]), Dataset.from_atoms([extra])])
    u = both.xr["info_uncertainty"].values
    assert np.isnan(u[:2]).all() and u[2] == 0.25


def test_strings_longer_than_in_the_first_file_survive_a_save(tmp_path):
    """Concatenating a loaded dataset whose statuses are all "ok" with a failed one and
    saving again keeps "failed" whole (no fixed string width inherited from the file)."""
    ok = molecule("H2O")
    ok.calc = SinglePointCalculator(ok, energy=-1.0)
    bad = molecule("H2O")
    bad.info.update(status=STATUS_FAILED, error="SCF not converged")
    Dataset.from_atoms([ok]).save(tmp_path / "a.nc")
    both = Dataset.concat([Dataset.load(tmp_path / "a.nc"), Dataset.from_atoms([bad])])
    both.save(tmp_path / "b.nc")
    assert Dataset.load(tmp_path / "b.nc").status.tolist() == ["ok", "failed"]
