"""ANI HDF5 reader: the three real layouts, written small with h5py."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase.units import Hartree

from nnp_lab.data.ani_h5 import read_ani_h5
from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import FileFormatError

RNG = np.random.default_rng(0)
WATER = np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]])
METHANE = np.array(
    [
        [0, 0, 0],
        [0.63, 0.63, 0.63],
        [-0.63, -0.63, 0.63],
        [-0.63, 0.63, -0.63],
        [0.63, -0.63, -0.63],
    ]
)


def _conformers(base: np.ndarray, m: int) -> np.ndarray:
    return base[None] + RNG.normal(0.0, 0.02, (m, *base.shape))


def write_ani1x(path) -> dict:
    """ANI-1x release layout: one group per formula."""
    truth = {}
    with h5py.File(path, "w") as f:
        for name, z, base, m in (
            ("H2O1", [8, 1, 1], WATER, 4),
            ("C1H4", [6, 1, 1, 1, 1], METHANE, 3),
        ):
            g = f.create_group(name)
            g["atomic_numbers"] = np.array(z, dtype=np.uint8)
            xyz = _conformers(base, m)
            g["coordinates"] = xyz.astype(np.float32)
            e = -76.0 - RNG.random(m)
            forces = RNG.normal(0, 0.05, (m, len(z), 3))
            g["wb97x_dz.energy"] = e
            g["wb97x_dz.forces"] = forces.astype(np.float32)
            cc = e - 0.3
            cc[1] = np.nan  # CCSD(T) missing for conformer 1, as in the real file
            g["ccsd(t)_cbs.energy"] = cc
            truth[name] = (z, xyz.astype(np.float32), e, forces.astype(np.float32), cc)
    return truth


def test_ani1x_layout_counts_species_and_units(tmp_path):
    path = tmp_path / "ani1x-release.h5"
    truth = write_ani1x(path)
    ds = read_ani_h5(path)
    assert len(ds) == 7  # 4 + 3 conformers, all with wb97x_dz energies
    assert ds.species == ["H", "C", "O"]
    by_source = {}
    for k in range(len(ds)):
        by_source.setdefault(str(ds.xr["source"].values[k]), []).append(k)
    assert sorted(by_source) == ["/C1H4", "/H2O1"]
    for name, (z, xyz, e, forces, _) in truth.items():
        for c, k in enumerate(by_source[f"/{name}"]):
            atoms = ds[k]
            assert atoms.numbers.tolist() == z
            # float32 coordinates are stored as float64 unchanged: exact
            np.testing.assert_array_equal(atoms.positions, xyz[c].astype(np.float64))
            # Hartree -> eV with ase.units.Hartree (27.211386...): exact up to float rounding
            assert atoms.get_potential_energy() == pytest.approx(e[c] * Hartree, rel=1e-14)
            np.testing.assert_allclose(
                atoms.get_forces(), forces[c].astype(np.float64) * Hartree, rtol=1e-14
            )
            assert atoms.info["method"] == "wb97x_dz.energy"
    assert ds.xr.attrs["skipped_missing_energy"] == 0


def test_ani1x_other_level_skips_nan_and_reports(tmp_path):
    path = tmp_path / "ani1x-release.h5"
    write_ani1x(path)
    with pytest.warns(UserWarning, match="skipped 2 conformer"):
        ds = read_ani_h5(path, energy_key="ccsd(t)_cbs.energy")
    assert len(ds) == 5  # 7 conformers - one NaN per group
    assert ds.xr.attrs["skipped_missing_energy"] == 2
    assert set(ds.xr["method"].values) == {"ccsd(t)_cbs.energy"}
    assert np.isnan(ds.xr["forces"].values).all()  # no ccsd(t)_cbs.forces in the file
    assert 1 not in ds.xr["info_conformer"].values[:3]  # conformer 1 of H2O1 was skipped
    kept = read_ani_h5(path, energy_key="ccsd(t)_cbs.energy", skip_missing=False)
    assert len(kept) == 7 and (kept.status == "unlabelled").sum() == 2  # kept, to be labelled
    assert kept.xr.attrs["unlabelled_missing_energy"] == 2
    assert kept.xr.attrs["skipped_missing_energy"] == 0


def test_ani1x_max_conformers(tmp_path):
    path = tmp_path / "ani1x-release.h5"
    write_ani1x(path)
    ds = read_ani_h5(path, max_conformers=5)
    assert len(ds) == 5


def test_torchani_ani2x_layout(tmp_path):
    path = tmp_path / "ANI-2x-wB97X-631Gd.h5"
    with h5py.File(path, "w") as f:
        g3 = f.create_group("003")
        species3 = np.tile(np.array([8, 1, 1], dtype=np.int64), (2, 1))
        g3["species"] = species3
        g3["coordinates"] = _conformers(WATER, 2)
        g3["energies"] = np.array([-76.4, -76.3])
        g3["forces"] = np.full((2, 3, 3), 0.01)
        g5 = f.create_group("005")
        g5["species"] = np.array([[6, 1, 1, 1, 1], [7, 1, 1, 1, 1]])  # per-conformer species
        g5["coordinates"] = _conformers(METHANE, 2)
        g5["energies"] = np.array([-40.5, -56.0])
    ds = read_ani_h5(path)
    assert len(ds) == 4
    assert [ds[k].get_chemical_formula() for k in range(4)] == ["H2O", "H2O", "CH4", "H4N"]
    assert ds.energy[0] == pytest.approx(-76.4 * Hartree, rel=1e-14)  # Ha -> eV, exact
    np.testing.assert_allclose(ds[0].get_forces(), 0.01 * Hartree, rtol=1e-14)  # Ha/Å -> eV/Å
    assert np.isnan(ds.xr["forces"].values[6:]).all()  # group 005 has no forces
    assert set(ds.xr["method"].values) == {"energies"}


def test_original_ani1_layout_with_byte_symbols(tmp_path):
    path = tmp_path / "ani_gdb_s01.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("gdb11_s01").create_group("gdb11_s01-0")
        g["species"] = np.array([b"C", b"H", b"H", b"H", b"H"])
        g["coordinates"] = _conformers(METHANE, 3).astype(np.float32)
        g["energies"] = np.array([-40.45, -40.44, -40.43])
        g["smiles"] = np.array([b"[H]C([H])([H])[H]"])
    ds = read_ani_h5(path, energy_unit="hartree")
    assert len(ds) == 3
    assert ds[0].numbers.tolist() == [6, 1, 1, 1, 1]
    assert str(ds.xr["source"].values[0]) == "/gdb11_s01/gdb11_s01-0"
    np.testing.assert_allclose(ds.energy, np.array([-40.45, -40.44, -40.43]) * Hartree, rtol=1e-14)
    ev = read_ani_h5(path, energy_unit="ev")
    np.testing.assert_allclose(ev.energy, [-40.45, -40.44, -40.43], rtol=1e-14)


def test_dataset_read_dispatches_h5(tmp_path):
    path = tmp_path / "data.h5"
    write_ani1x(path)
    ds = Dataset.read(path, max_conformers=2)
    assert len(ds) == 2 and ds.xr.attrs["energy_key"] == "wb97x_dz.energy"


def test_wrong_files_raise_file_format_error(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("this is a text file, not HDF5\n")
    with pytest.raises(FileFormatError, match="not an HDF5 file"):
        Dataset.read(text)
    with pytest.raises(FileFormatError, match=r"not an HDF5 file.*expected an ANI HDF5 file"):
        read_ani_h5(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["images"] = np.zeros((2, 4, 4))
    with pytest.raises(FileFormatError, match="no ANI conformer groups"):
        read_ani_h5(other)
    good = tmp_path / "ani1x.h5"
    write_ani1x(good)
    with pytest.raises(
        FileFormatError, match=r"no group .* has the energy dataset 'b3lyp\.energy'"
    ):
        read_ani_h5(good, energy_key="b3lyp.energy")
