"""ASE calculator adapter: any nnp-lab potential drives ase.md, ase.optimize, ase.mep.NEB."""

from __future__ import annotations

import copy
import os
from typing import Any, ClassVar

import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from nnp_lab.data.batch import Batch
from nnp_lab.errors import InputError
from nnp_lab.training.config import resolve_device


class NNPCalculator(Calculator):
    """ASE calculator for a :class:`nnp_lab.Potential` (or a path to a saved one).

    Properties: ``energy``/``free_energy`` (eV), ``energies`` (per atom, eV), ``forces``
    (eV/Å) and, for cells with three non-zero lattice vectors, ``stress`` (eV/Å³, Voigt
    order xx yy zz yz xz xy, ASE's sign convention).

    Args:
        potential: a Potential, or the path of a file written by ``Potential.save``.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"`` …
        dtype: ``"float64"`` (default; best energy conservation in MD) or ``"float32"``.
    """

    implemented_properties: ClassVar[list[str]] = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
    ]

    def __init__(
        self,
        potential: Any,
        device: str = "auto",
        dtype: str | torch.dtype = "float64",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if isinstance(potential, (str, os.PathLike)):
            from nnp_lab.models.serialization import load

            potential = load(potential)
        if isinstance(dtype, str):
            if dtype not in ("float32", "float64"):
                raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
            dtype = getattr(torch, dtype)
        device = resolve_device(device)
        if potential.dtype != dtype or potential.device != device:
            # convert a copy: the caller's potential keeps its own dtype/device
            potential = copy.deepcopy(potential).to(device=device, dtype=dtype)
        self.potential = potential
        self.potential.eval()

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and atoms.cell.rank < 3:
            raise PropertyNotImplementedError(
                "stress needs a cell with three non-zero lattice vectors"
            )
        pot = self.potential
        batch = Batch.from_atoms(atoms, dtype=pot.dtype, device=pot.device)
        stress = want_stress or atoms.cell.rank == 3
        out = pot(batch, forces=True, stress=stress)
        energy = float(out["energy"][0].detach())
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["atomic_energies"].detach().cpu().numpy()
        self.results["forces"] = out["forces"].detach().cpu().numpy().astype(float)
        if stress:
            s = out["stress"][0].detach().cpu().numpy().astype(float)
            self.results["stress"] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
