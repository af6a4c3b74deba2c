"""i-PI direct-forcefield driver (``<pes>custom</pes>``) for an nnp-lab potential or committee.

Loaded by i-PI from its path; parameters: ``template`` (ase-readable structure) and
``model`` (nnp-lab file). Single structures go through the model one call each; a batch
(i-PI's ``batch_size`` > 1) goes through it as one flat batch, as nnp-lab's own PIMD does.
Positions arrive in bohr and energies/forces return in hartree units.
"""

from __future__ import annotations

import numpy as np
import torch
from ipi.pes.dummy import Dummy_driver
from ipi.utils.units import unit_to_internal, unit_to_user

__DRIVER_NAME__ = "nnp_lab"
__DRIVER_CLASS__ = "NNPLabDriver"


class NNPLabDriver(Dummy_driver):
    """nnp-lab model as an i-PI PES."""

    def __init__(self, template: str, model: str, *args, **kwargs):
        self.template, self.model_path = template, model
        super().__init__(*args, **kwargs)

    def check_parameters(self) -> None:
        from ase.io import read

        from nnp_lab.dynamics.calculator import load_model
        from nnp_lab.dynamics.pimd.beads import ModelBeads

        self.atoms = read(self.template)
        self.model = load_model(self.model_path)
        self._factory = ModelBeads
        self._evaluators: dict[int, object] = {}

    def _evaluate(self, positions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        p = len(positions)
        if p not in self._evaluators:
            self._evaluators[p] = self._factory(self.model, self.atoms, p)
        q = np.stack([unit_to_user("length", "angstrom", x.reshape(-1, 3)) for x in positions])
        out = self._evaluators[p](torch.as_tensor(q))
        energy = unit_to_internal("energy", "electronvolt", out["energy"].numpy())
        forces = unit_to_internal("force", "ev/ang", out["forces"].numpy())
        return energy, forces

    def compute_structure(self, cell, pos):
        e, f = self._evaluate([pos])
        return float(e[0]), f[0].reshape(pos.shape), np.zeros((3, 3)), ""

    def compute(self, cell, pos):
        if isinstance(cell, list):
            e, f = self._evaluate(pos)
            return [
                (float(e[k]), f[k].reshape(pos[k].shape), np.zeros((3, 3)), "")
                for k in range(len(pos))
            ]
        return self.compute_structure(cell, pos)
