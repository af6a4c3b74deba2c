"""Energies and forces of all P beads at once.

A bead evaluator maps bead positions (P, N, 3) [Å, float64] to a dict with ``energy``
(P,) [eV] and ``forces`` (P, N, 3) [eV/Å] (and, for a committee, ``force_spread`` (P, N) and ``energy_std`` (P,)).
nnp-lab potentials and committees get the P replicas as ONE flat batch — one network pass
per step whatever P is; an ASE calculator is the slower fallback (one call per bead); a
torch function of the positions gets its forces by autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator

from nnp_lab.data.batch import Batch
from nnp_lab.errors import InputError


class BeadEvaluator(Protocol):
    """Callable: bead positions (P, N, 3) → {"energy": (P,), "forces": (P, N, 3), …}."""

    def __call__(self, q: torch.Tensor) -> dict[str, torch.Tensor]: ...


class ModelBeads:
    """An nnp-lab ``Potential`` or ``Committee`` evaluated on all beads as one batch.

    The neighbor list is a Verlet list: built with the model's cutoff plus ``skin`` and
    reused until some atom of some bead has moved more than ``skin``/2 since the build
    (pairs beyond the cutoff contribute exactly zero; positions are never wrapped, so the
    periodic shifts stay valid). ``skin = 0`` rebuilds every call.
    """

    def __init__(self, model: Any, atoms: Atoms, n_beads: int, skin: float = 0.5):
        from nnp_lab.models.committee import Committee

        if skin < 0:
            raise InputError(f"skin must be ≥ 0 Å, got {skin}")
        self.model = model
        self.committee = isinstance(model, Committee)
        self.n_beads = n_beads
        self.n_atoms = len(atoms)
        self.skin = float(skin)
        self.template = Batch.from_atoms([atoms] * n_beads, dtype=model.dtype, device=model.device)
        self._built_at: torch.Tensor | None = None
        self.rebuilds = 0

    def _neighbors(self, q: torch.Tensor) -> None:
        b = self.template
        ref = self._built_at
        if ref is not None and self.skin > 0:
            moved = float((q - ref).norm(dim=-1).max())
            if moved <= 0.5 * self.skin:
                return
        b.pairs = None
        b.neighbors(float(self.model.cutoff) + self.skin)
        self._built_at = q.detach().clone()
        self.rebuilds += 1

    def __call__(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.template
        b.positions = q.reshape(-1, 3).to(device=b.device, dtype=b.dtype)
        self._neighbors(q.reshape(-1, 3).detach().to(torch.float64))
        out = self.model(b, forces=True)
        shape = (self.n_beads, self.n_atoms, 3)
        if self.committee:
            return {
                "energy": out["energy_mean"].to(torch.float64).cpu(),
                "forces": out["forces_mean"].to(torch.float64).cpu().reshape(shape),
                "force_spread": out["force_spread"].to(torch.float64).cpu().view(shape[:2]),
                "energy_std": out["energy_std"].to(torch.float64).cpu(),
            }
        return {
            "energy": out["energy"].to(torch.float64).cpu(),
            "forces": out["forces"].to(torch.float64).cpu().reshape(shape),
        }


class CalculatorBeads:
    """Any ASE calculator, one bead at a time (the fallback: P calls per step)."""

    def __init__(self, calc: Calculator, atoms: Atoms):
        self.atoms = atoms.copy()
        self.atoms.calc = calc

    def __call__(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        energy, forces = [], []
        for x in q.detach().cpu().numpy():
            self.atoms.positions = x
            energy.append(self.atoms.get_potential_energy())
            forces.append(self.atoms.get_forces())
        return {
            "energy": torch.as_tensor(np.array(energy), dtype=torch.float64),
            "forces": torch.as_tensor(np.array(forces), dtype=torch.float64),
        }


class FunctionBeads:
    """A torch function of the bead positions (P, N, 3) → energies (P,); forces by autograd."""

    def __init__(self, energy: Callable[[torch.Tensor], torch.Tensor]):
        self.energy = energy

    def __call__(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        x = q.detach().to(torch.float64).requires_grad_(True)
        e = self.energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
        return {"energy": e.detach(), "forces": -g}


def bead_evaluator(potential: Any, atoms: Atoms, n_beads: int) -> BeadEvaluator:
    """The evaluator for ``potential``: an nnp-lab model (or a path to one), an ASE
    calculator, a :class:`FunctionBeads`-style object, or a torch energy function."""
    from nnp_lab.dynamics.calculator import load_model
    from nnp_lab.models.committee import Committee
    from nnp_lab.models.potential import Potential

    if isinstance(potential, ModelBeads | CalculatorBeads | FunctionBeads):
        return potential
    if isinstance(potential, Calculator):
        return CalculatorBeads(potential, atoms)
    if isinstance(potential, str) or hasattr(potential, "__fspath__"):
        potential = load_model(potential)
    if isinstance(potential, Potential | Committee):
        return ModelBeads(potential, atoms, n_beads)
    if callable(potential):
        return FunctionBeads(potential)
    raise InputError(
        "potential must be an nnp-lab Potential/Committee (or its file), an ASE calculator "
        f"or a torch energy function of bead positions, got {type(potential).__name__}"
    )
