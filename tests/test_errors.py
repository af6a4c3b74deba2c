"""Bad input gives a clear nnp-lab exception naming the problem, not a deep torch traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from nnp_lab import Dataset, NNPCalculator, Potential, Trainer
from nnp_lab.config_io import load_config
from nnp_lab.errors import CheckpointError, ConfigError, FileFormatError, InputError, SpeciesError
from nnp_lab.training.run import TrainRunConfig


@pytest.fixture(scope="module")
def cu_model() -> Potential:
    torch.manual_seed(0)
    return Potential(species=["Cu"], descriptor="metal", hidden=[8]).double()


def test_unknown_element_for_model(cu_model):
    atoms = bulk("Cu", cubic=True)
    atoms.symbols[0] = "Fe"
    with pytest.raises(SpeciesError, match=r"\['Fe'\].*\['Cu'\]"):
        cu_model.predict(atoms)
    atoms.calc = NNPCalculator(cu_model)
    with pytest.raises(SpeciesError, match="Fe"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_positions(cu_model, bad):
    atoms = bulk("Cu", cubic=True)
    atoms.positions[2, 1] = bad
    with pytest.raises(InputError, match=r"NaN or inf at atom\(s\) \[2\]"):
        cu_model.predict(atoms)
    with pytest.raises(InputError, match="structure 1: positions contain NaN"):
        Dataset.from_atoms([bulk("Cu", cubic=True), atoms])


def test_atoms_too_close(cu_model):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(InputError, match=r"atoms 0 and 1 are 0.05 Å apart \(< 0.1 Å\)"):
        cu_model.predict(atoms)
    # also across a periodic boundary
    cell = Atoms("Cu2", positions=[[0.01, 0, 0], [3.99, 0, 0]], cell=[4, 4, 4], pbc=True)
    with pytest.raises(InputError, match="apart"):
        cu_model.predict(cell)


def test_pbc_with_zero_volume_cell(cu_model):
    atoms = Atoms("Cu", positions=[[0, 0, 0]], pbc=True)
    with pytest.raises(InputError, match="zero volume"):
        cu_model.predict(atoms)
    flat = Atoms("Cu", positions=[[0, 0, 0]], cell=[3, 3, 0], pbc=[True, True, True])
    with pytest.raises(InputError, match=r"cell vector 2 .* is zero"):
        Dataset.from_atoms([flat])
    skew = Atoms("Cu", positions=[[0, 0, 0]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True)
    with pytest.raises(InputError, match="linearly dependent"):
        cu_model.predict(skew)
    # a slab periodic in x, y only may have a zero third vector: that is valid
    from ase.build import fcc111

    slab = fcc111("Cu", (2, 2, 2))
    assert slab.cell.array[2].tolist() == [0, 0, 0] and not slab.pbc[2]
    assert np.isfinite(cu_model.predict(slab)["energy"])


def test_file_that_is_not_a_dataset(tmp_path):
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x00\x01 this is not a structure file \xff")
    with pytest.raises(FileFormatError, match=r"not netCDF/HDF5 and ase.io could not read it"):
        Dataset.read(junk)
    fake_nc = tmp_path / "fake.nc"
    fake_nc.write_text("not netcdf")
    with pytest.raises(FileFormatError, match="not a netCDF dataset"):
        Dataset.read(fake_nc)
    with pytest.raises(FileFormatError, match="does not exist"):
        Dataset.read(tmp_path / "missing.xyz")


def test_netcdf_that_is_not_ours(tmp_path):
    import xarray as xr

    path = tmp_path / "other.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(FileFormatError, match=r"variables .* are missing"):
        Dataset.read(path)


def test_training_checkpoint_for_other_species(cu_dataset, tmp_path):
    torch.manual_seed(0)
    pot = Potential(species=["Cu"], descriptor="metal", hidden=[8])
    Trainer(pot, cu_dataset, cu_dataset, epochs=1, workdir=tmp_path).fit(show_progress=False)
    other = Potential(species=["Cu", "Ag"], descriptor="metal", hidden=[8])
    with pytest.raises(SpeciesError, match=r"checkpoint .* is for species \['Cu'\]"):
        Trainer(other, cu_dataset, cu_dataset, epochs=2, workdir=tmp_path).fit(
            resume=True, show_progress=False
        )


def test_training_set_with_species_the_model_lacks(cu_dataset):
    pot = Potential(species=["Ag"], descriptor="metal", hidden=[8])
    with pytest.raises(SpeciesError, match=r"contains \['Cu'\]"):
        Trainer(pot, cu_dataset, epochs=1)


def test_misspelt_config_field(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("training:\n  epochs: 3\n  learning_rat: 0.01\nmodel:\n  hiden: [8]\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrainRunConfig, cfg)
    msg = str(err.value)
    assert "training.learning_rat: unknown field" in msg
    assert "model.hiden: unknown field" in msg


def test_wrong_value_type_in_config(tmp_path):
    cfg = tmp_path / "train.json"
    cfg.write_text('{"training": {"epochs": "many"}}')
    with pytest.raises(ConfigError, match=r"training.epochs"):
        load_config(TrainRunConfig, cfg)


def test_corrupt_training_checkpoint(cu_dataset, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    pot = Potential(species=["Cu"], descriptor="metal", hidden=[8])
    with pytest.raises(CheckpointError, match="not a readable nnp-lab training checkpoint"):
        Trainer(pot, cu_dataset, epochs=1, workdir=tmp_path).fit(resume=True, show_progress=False)


def test_empty_and_wrong_type_inputs(cu_model):
    with pytest.raises(InputError, match="empty"):
        Dataset.from_atoms([])
    with pytest.raises(InputError, match=r"expected ase.Atoms"):
        Dataset.from_atoms(["not atoms"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="sum to 1"):
        Dataset.from_atoms([molecule("H2O")] * 3).split((0.5, 0.2))
