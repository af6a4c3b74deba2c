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


class CommitteeCalculator(Calculator):
    """ASE calculator for a :class:`~nnp_lab.models.committee.Committee`: dynamics follow
    the committee-mean energy and forces; the spread comes with every evaluation.

    Extra entries of ``results`` after each calculation: ``energy_std`` (eV),
    ``force_spread`` (N,) per-atom ‖std over members‖ (eV/Å), ``max_force_spread``
    (eV/Å) — multiplied by ``force_scale`` (a calibration factor, 1 = raw spread) — and
    ``members_energy`` (K,).
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "energies", "forces"]

    def __init__(self, committee: Any, force_scale: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        if not (force_scale > 0):
            raise InputError(f"force_scale must be > 0, got {force_scale}")
        self.committee = committee
        self.force_scale = float(force_scale)
        committee.eval()

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        com = self.committee
        batch = Batch.from_atoms(self.atoms, dtype=com.dtype, device=com.device)
        out = com(batch, forces=True)
        energy = float(out["energy_mean"][0])
        spread = out["force_spread"].detach().cpu().numpy().astype(float) * self.force_scale
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["atomic_energies"].mean(0).detach().cpu().numpy()
        self.results["forces"] = out["forces_mean"].detach().cpu().numpy().astype(float)
        self.results["energy_std"] = float(out["energy_std"][0])
        self.results["force_spread"] = spread
        self.results["max_force_spread"] = float(spread.max()) if spread.size else 0.0
        self.results["members_energy"] = out["energy"][:, 0].detach().cpu().numpy()


def load_model(model: Any, device: str = "cpu") -> Any:
    """A :class:`~nnp_lab.models.committee.Committee` or :class:`~nnp_lab.Potential`: the
    object itself, or loaded from a committee file or a potential file."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    from nnp_lab.errors import CheckpointError
    from nnp_lab.models.committee import Committee
    from nnp_lab.models.serialization import load

    try:
        return Committee.load(model, device=device)
    except CheckpointError:
        return load(model, device=device)


def calculator_for(model: Any) -> Calculator:
    """The ASE calculator of a committee (:class:`CommitteeCalculator`) or a potential
    (:class:`NNPCalculator`), given as an object or a file (see :func:`load_model`)."""
    from nnp_lab.models.committee import Committee

    model = load_model(model)
    if isinstance(model, Committee):
        return CommitteeCalculator(model)
    return NNPCalculator(model)
