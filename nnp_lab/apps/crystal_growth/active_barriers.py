"""A barrier source that learns while the crystal grows.

The KMC asks for the barriers of environments it meets for the first time; the committee
model answers, and the new environments whose committee spread is above ``threshold``
(at most ``budget`` per request, the most uncertain first) go to NEB on the reference.
Their results join the training data, the model is refitted (warm start), and the source's
``version`` goes up, which makes the KMC re-ask every catalogued key so that forward and
reverse moves always come from the same model (detailed balance holds at every stage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ase.calculators.calculator import Calculator

from nnp_lab.apps.crystal_growth.barrier_data import BarrierCache, canonical, physical
from nnp_lab.apps.crystal_growth.barrier_model import BarrierModel
from nnp_lab.apps.crystal_growth.lattice import Surface
from nnp_lab.apps.crystal_growth.neb import neb_barrier


def _emt() -> Calculator:
    from ase.calculators.emt import EMT

    return EMT()


@dataclass
class ReferenceCall:
    """One environment sent to the reference during growth."""

    key: int
    spread_before: float
    predicted_before: float
    reference: float
    status: str


@dataclass
class ActiveBarriers:
    """Committee barriers with on-the-fly NEB for uncertain new environments."""

    model: BarrierModel
    keys: list[int]
    barrier: list[float]
    delta_e: list[float]
    threshold: float = 0.05
    budget: int = 4
    max_reference: int = 100
    refit_epochs: int = 400
    reference: Callable[[], Calculator] = _emt
    reference_name: str = "EMT"
    cache: BarrierCache | None = None
    version: int = 0
    calls: list[ReferenceCall] = field(default_factory=list)
    _judged: set[int] = field(default_factory=set)

    def barriers(self, surface: Surface, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        pred = self.model.predict(keys)
        fresh = [
            (float(s), int(k), float(b))
            for k, s, b in zip(keys, pred["barrier_std"], pred["barrier"])
            if int(k) not in self._judged
        ]
        self._judged.update(int(k) for k in keys)
        room = min(self.budget, self.max_reference - len(self.calls))
        ask = sorted((x for x in fresh if x[0] > self.threshold), reverse=True)[: max(room, 0)]
        added = 0
        for spread, key, before in ask:
            ref_key = canonical(surface, key)
            if not physical(surface, ref_key):
                continue
            res = self.cache.get(surface, self.reference_name, ref_key) if self.cache else None
            if res is None:
                res = neb_barrier(surface, ref_key, self.reference)
                if self.cache:
                    self.cache.put(surface, self.reference_name, res)
            value = res.barrier if ref_key == key else res.reverse_barrier
            self.calls.append(ReferenceCall(key, spread, before, value, res.status))
            if res.status == "ok" and ref_key not in self.keys:
                self.keys.append(ref_key)
                self.barrier.append(res.barrier)
                self.delta_e.append(res.delta_e)
                added += 1
        if added:
            self.model.fit(
                np.array(self.keys),
                np.array(self.barrier),
                np.array(self.delta_e),
                epochs=self.refit_epochs,
                reset_statistics=False,
                lr=1e-3,
            )
            self.version += 1
            pred = self.model.predict(keys)
        return pred["barrier"]
