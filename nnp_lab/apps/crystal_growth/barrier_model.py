"""The barrier model: a committee of networks from the moving atom's environment to the
barrier of its move.

Input: ANI symmetry functions (the library's descriptor, ``metal`` preset) of the moving
atom at its initial site ``G_s``, at its target ``G_t`` (each in its own configuration)
and at the midpoint ``G_m``, on the ideal lattice geometry of the move's environment: its
occupied sites, every support they need (:func:`~.neb.event_sites`) and a semi-infinite
substrate. Each member has two heads:

* a site-energy head ``ε(G)``: the reaction energy is ``ΔE = ε(G_t) − ε(G_s)``;
* a saddle head ``h`` of the symmetric input ``(G_s + G_t, |G_s − G_t|, G_m)``.

``E_b = max(0, ΔE) + softplus(h)``. The reverse move sees the same environment with
``s`` and ``t`` swapped: same ``h``, ``ΔE`` negated, so ``E_b(fwd) − E_b(rev) = ΔE``
exactly for every catalogued pair (detailed balance), and no barrier is below the
reaction energy or zero. The committee spread (std over members) of ``E_b`` says where
the model is guessing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnp_lab._atomic import atomic_write
from nnp_lab.apps.crystal_growth.lattice import Surface
from nnp_lab.errors import InputError
from nnp_lab.models.descriptor import ANIDescriptor, DescriptorConfig

FORMAT = "nnp-lab-barrier-model-1"


class _Member(nn.Module):
    def __init__(self, n_features: int, hidden: tuple[int, ...]):
        super().__init__()

        def mlp(n_in: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for h in hidden:
                layers += [nn.Linear(n_in, h), nn.SiLU()]
                n_in = h
            layers.append(nn.Linear(n_in, 1))
            return nn.Sequential(*layers)

        self.site = mlp(n_features)
        self.saddle = mlp(3 * n_features)

    def forward(self, gs: torch.Tensor, gt: torch.Tensor, gm: torch.Tensor):
        de = (self.site(gt) - self.site(gs)).squeeze(-1)
        h = self.saddle(torch.cat([gs + gt, (gs - gt).abs(), gm], dim=-1)).squeeze(-1)
        eb = torch.relu(de) + nn.functional.softplus(h)
        return eb, de


class BarrierModel:
    """Committee barrier model of one metal surface (see the module docstring)."""

    def __init__(
        self,
        surface: Surface,
        members: int = 5,
        hidden: tuple[int, ...] = (64, 64),
        seed: int = 0,
    ):
        if members < 2:
            raise InputError("a committee needs at least 2 members")
        self.surface = surface
        self.hidden = tuple(int(h) for h in hidden)
        self.seed = int(seed)
        self.descriptor = ANIDescriptor(DescriptorConfig.preset("metal"), 1, backend="auto")
        n_f = self.descriptor.num_features
        torch.manual_seed(seed)
        self.members = nn.ModuleList([_Member(n_f, self.hidden).double() for _ in range(members)])
        self.mean = torch.zeros(n_f, dtype=torch.float64)
        self.std = torch.ones(n_f, dtype=torch.float64)
        self._features: dict[int, np.ndarray] = {}
        self.history: list[float] = []

    # ------------------------------------------------------------------ features
    def _substrate(self, z0: int) -> np.ndarray:
        """Substrate sites (layers ≤ 0, deep enough for the cutoff) around ``(z0, 0, 0)``."""
        cache = self.__dict__.setdefault("_substrate_cache", {})
        if z0 not in cache:
            spacing = self.surface.position((1, 0, 0))[2]
            depth = int(np.ceil(self.descriptor.cutoff / spacing)) + 1
            reach = int(np.ceil(self.descriptor.cutoff / self.surface.d * 1.2)) + 3
            r = np.arange(-reach, reach + 1)
            zi, ii, jj = np.meshgrid(np.arange(-depth + 1, 1), r, r, indexing="ij")
            cache[z0] = np.stack([zi.ravel(), ii.ravel(), jj.ravel()], axis=1)
        return cache[z0]

    def _compute(self, keys: list[int]) -> None:
        """Descriptors of the moving atom at s, t and their midpoint, from the ideal lattice:
        the environment's atoms, the supports they need, a semi-infinite substrate."""
        from nnp_lab.apps.crystal_growth.neb import event_sites
        from nnp_lab.kernels.backend import centre_aev

        cut = self.descriptor.cutoff
        vecs, centres = [], []
        for n, key in enumerate(keys):
            s, t, others = event_sites(self.surface, key)
            sub = self._substrate(s[0]) + np.array([0, s[1], s[2]])
            sites = np.concatenate([np.array(others, dtype=int).reshape(-1, 3), sub])
            pos = self.surface.position(sites)
            ps, pt = self.surface.position(s), self.surface.position(t)
            for k, c in enumerate((ps, pt, 0.5 * (ps + pt))):
                d = pos - c
                near = np.einsum("ij,ij->i", d, d) < cut * cut
                vecs.append(d[near])
                centres.append(np.full(int(near.sum()), 3 * n + k))
        v = torch.from_numpy(np.concatenate(vecs))
        i = torch.from_numpy(np.concatenate(centres))
        zeros = torch.zeros(len(i), dtype=torch.long)
        with torch.no_grad():
            g = centre_aev(
                3 * len(keys),
                i,
                torch.arange(len(i)),
                zeros,
                v,
                self.descriptor.params,
                self.descriptor.backend,
            )
        g = g.numpy().reshape(len(keys), 3, -1)
        for k, row in zip(keys, g):
            self._features[int(k)] = row

    def features(self, keys: np.ndarray | list[int]) -> torch.Tensor:
        """(n, 3, F) descriptors ``G_s, G_t, G_m`` of the moving atom, cached per key."""
        keys = [int(k) for k in keys]
        todo = [k for k in dict.fromkeys(keys) if k not in self._features]
        for start in range(0, len(todo), 256):
            self._compute(todo[start : start + 256])
        return torch.from_numpy(np.stack([self._features[k] for k in keys]))

    def _standard(self, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        g = (g - self.mean) / self.std
        return g[:, 0], g[:, 1], g[:, 2]

    # ------------------------------------------------------------------ training
    def fit(
        self,
        keys: np.ndarray,
        barrier: np.ndarray,
        delta_e: np.ndarray,
        epochs: int = 1500,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        bootstrap: bool = True,
        reset_statistics: bool = True,
    ) -> BarrierModel:
        """Train every member (full batch, Adam) on NEB barriers and reaction energies."""
        keys = np.asarray(keys, dtype=np.int64)
        eb = torch.as_tensor(np.asarray(barrier, dtype=float))
        de = torch.as_tensor(np.asarray(delta_e, dtype=float))
        if len(keys) < 4 or not (torch.isfinite(eb).all() and torch.isfinite(de).all()):
            raise InputError("fit needs at least 4 events with finite barriers and ΔE")
        g = self.features(keys)
        if reset_statistics:
            flat = g.reshape(-1, g.shape[-1])
            self.mean = flat.mean(0)
            self.std = torch.where(flat.std(0) > 1e-8, flat.std(0), torch.ones_like(self.mean))
        gs, gt, gm = self._standard(g)
        rng = np.random.default_rng(self.seed)
        n = len(keys)
        for member in self.members:
            # Bayesian bootstrap (Rubin 1981): Dirichlet weights instead of resampling, so
            # every member sees every event (a resample leaves out 37 % of a small set)
            w = torch.as_tensor(rng.dirichlet(np.ones(n)) * n if bootstrap else np.ones(n))
            opt = torch.optim.Adam(member.parameters(), lr=lr, weight_decay=weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
            for _ in range(epochs):
                opt.zero_grad()
                p_eb, p_de = member(gs, gt, gm)
                loss = (w * (p_eb - eb) ** 2).mean() + (w * (p_de - de) ** 2).mean()
                loss.backward()
                opt.step()
                sched.step()
            self.history.append(float(loss.detach()))
        return self

    # ------------------------------------------------------------------ prediction
    def predict(self, keys: np.ndarray | list[int]) -> dict[str, np.ndarray]:
        """Committee mean and spread (std over members) of barrier and ΔE, and the
        members' barriers (K, n)."""
        gs, gt, gm = self._standard(self.features(keys))
        with torch.no_grad():
            out = [m(gs, gt, gm) for m in self.members]
        eb = torch.stack([o[0] for o in out]).numpy()
        de = torch.stack([o[1] for o in out]).numpy()
        return {
            "barrier": eb.mean(0),
            "barrier_std": eb.std(0),
            "delta_e": de.mean(0),
            "members": eb,
        }

    def barriers(self, surface: Surface, keys: np.ndarray) -> np.ndarray:
        """Committee-mean barriers (eV): the KMC's barrier source."""
        if surface != self.surface:
            raise InputError(f"this model is for {self.surface}, not {surface}")
        return self.predict(keys)["barrier"]

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        config = {
            "metal": self.surface.metal,
            "facet": self.surface.facet,
            "a": self.surface.a,
            "members": len(self.members),
            "hidden": list(self.hidden),
            "seed": self.seed,
        }
        state = {
            "format": FORMAT,
            "config": json.dumps(config),
            "mean": self.mean,
            "std": self.std,
            "members": [m.state_dict() for m in self.members],
        }
        return atomic_write(path, lambda p: torch.save(state, p))

    @classmethod
    def load(cls, path: str | Path) -> BarrierModel:
        state: dict[str, Any] = torch.load(path, weights_only=True)
        if state.get("format") != FORMAT:
            raise InputError(f"{path} is not an nnp-lab barrier model")
        c = json.loads(state["config"])
        model = cls(
            Surface(c["metal"], c["facet"], c["a"]), c["members"], tuple(c["hidden"]), c["seed"]
        )
        model.mean, model.std = state["mean"], state["std"]
        for m, sd in zip(model.members, state["members"]):
            m.load_state_dict(sd)
        return model
