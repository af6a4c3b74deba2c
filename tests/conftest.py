"""Shared fixtures: small real datasets labelled with EMT, seeded models."""

from __future__ import annotations

import os

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# PySCF loads its own OpenMP runtime; with the default active wait policy its idle threads
# spin and starve torch/tblite on a 2-core machine (50-100x slower). Passive waiting costs
# ~15 % in a single busy process and prevents that.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# pytest-jupyter points HOME at a temporary folder; job workers started from a test server
# would then rebuild the C++ extension (~35 s) in an empty ~/.cache: pin the build cache.
os.environ.setdefault(
    "TORCH_EXTENSIONS_DIR", os.path.join(os.path.expanduser("~"), ".cache", "torch_extensions")
)

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, bulk, fcc111
from ase.calculators.emt import EMT

from nnp_lab import Dataset, Potential

torch.set_num_threads(2)


def emt_frames(n_per: int = 6, seed: int = 0) -> list:
    """Rattled Cu bulk and (111) slab+adatom frames labelled with EMT."""
    rng = np.random.default_rng(seed)
    base = [bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))]
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    add_adsorbate(slab, "Cu", 2.0, "fcc")
    base.append(slab)
    frames = []
    for b in base:
        for _ in range(n_per):
            a = b.copy()
            a.positions += rng.normal(0, 0.08, a.positions.shape)
            a.calc = EMT()
            a.get_potential_energy()
            a.get_forces()
            frames.append(a)
    return frames


@pytest.fixture(scope="session")
def cu_dataset() -> Dataset:
    """24 EMT-labelled Cu structures (bulk 16 atoms, slab+adatom 13 atoms)."""
    return Dataset.from_atoms(emt_frames(12), method="EMT")


@pytest.fixture
def cu_potential() -> Potential:
    torch.manual_seed(0)
    return Potential(species=["Cu"], descriptor="metal", hidden=[16, 16]).double()


@pytest.fixture(scope="session")
def trained_cu(cu_dataset) -> Potential:
    """A Cu potential briefly trained (float64) on the EMT fixture data: physical enough
    for optimisation and NEB tests (atoms repel at short range)."""
    from nnp_lab import Trainer

    torch.manual_seed(0)
    pot = Potential(species=["Cu"], descriptor="metal", hidden=[16, 16])
    Trainer(
        pot, cu_dataset, cu_dataset, epochs=15, batch_size=4, learning_rate=3e-3, dtype="float64"
    ).fit(show_progress=False)
    return pot
