"""A committee of K potentials evaluated in one pass: shared descriptors, stacked networks.

The members keep their own weights and statistics (self-energies, descriptor mean/std,
energy scale); :meth:`Committee.refresh` folds the statistics into stacked weights so that
one evaluation computes the descriptors once, runs all K networks of a species as batched
matrix products (the first layer as a single GEMM over all members), differentiates the
networks once, and the descriptors once per member. Predictions come with the committee
mean and spread (standard deviation over members, ``ddof=0``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from nnp_lab._atomic import atomic_write
from nnp_lab.data.batch import Batch
from nnp_lab.errors import CheckpointError, InputError
from nnp_lab.kernels.backend import Pullback, centre_aev_pullback, resolve_backend
from nnp_lab.models.engine import evaluate_chunked
from nnp_lab.models.networks import ACTIVATIONS
from nnp_lab.models.potential import ModelConfig, Potential

COMMITTEE_FORMAT = "nnp-lab-committee"


class Committee(nn.Module):
    """K potentials of the same architecture, evaluated together.

    Example::

        com = Committee([load(p) for p in paths])
        out = com.predict(atoms)   # energy_mean, energy_std, forces_mean, force_spread, ...
    """

    def __init__(self, members: Sequence[Potential]):
        super().__init__()
        members = list(members)
        if not members:
            raise InputError("a committee needs at least one member")
        first = members[0].config
        for k, m in enumerate(members[1:], start=1):
            if m.config != first:
                raise InputError(
                    f"committee member {k} has a different model config than member 0 "
                    "(species, descriptor, hidden layers and activation must match)"
                )
        self.members = nn.ModuleList(members)
        self.config: ModelConfig = first
        self.species = list(first.species)
        self.backend = members[0].descriptor.backend
        self.refresh()

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def cutoff(self) -> float:
        return self.members[0].cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @torch.no_grad()
    def refresh(self) -> None:
        """Rebuild the stacked weights from the members (call after changing a member)."""
        members = list(self.members)
        self._stacks: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for s in range(len(self.species)):
            layers = []
            nets = [m.networks.nets[s] for m in members]
            linears = [[mod for mod in net if isinstance(mod, nn.Linear)] for net in nets]
            n_layers = len(linears[0])
            for li in range(n_layers):
                ws, bs = [], []
                for m, lin in zip(members, linears):
                    w = lin[li].weight.detach().clone()  # (out, in)
                    b = lin[li].bias.detach().clone()
                    if li == 0 and m.config.normalize_descriptors:
                        w = w / m.feature_std  # fold (G − μ)/ς into the first layer
                        b = b - w @ m.feature_mean
                    if li == n_layers - 1:
                        w = w * m.energy_scale
                        b = b * m.energy_scale
                    ws.append(w.t())
                    bs.append(b)
                layers.append((torch.stack(ws), torch.stack(bs)))  # (K, in, out), (K, out)
            self._stacks.append(layers)
        self._self_energies = torch.stack([m.self_energies for m in members])  # (K, S) f64
        self._act = ACTIVATIONS[self.config.activation]()

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        super()._apply(fn, recurse)
        self.refresh()
        return self

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        return self.members[0].species_index(numbers)

    def _columns(
        self, neighbor_species: torch.Tensor, centre_species: torch.Tensor, params: Any
    ) -> torch.Tensor | None:
        """Feature columns that can be non-zero for the species in a chunk (None: all)."""
        present = torch.unique(torch.cat([neighbor_species, centre_species])).tolist()
        if len(present) == params.num_species:
            return None
        key = tuple(present)
        cache = self.__dict__.setdefault("_column_cache", {})
        if key not in cache:
            cache[key] = torch.tensor(params.feature_columns(key), dtype=torch.long)
        return cache[key].to(neighbor_species.device)

    def chunk_terms(
        self,
        vectors: torch.Tensor,
        i: torch.Tensor,
        j: torch.Tensor,
        neighbor_species: torch.Tensor,
        centre_species: torch.Tensor,
        need_grad: bool,
    ) -> tuple[torch.Tensor, Pullback | None, torch.Tensor | None]:
        """Energies (K, C), the descriptor pullback, ∂E_k/∂G (K, C, F); see
        :mod:`~nnp_lab.models.engine`."""
        params = self.members[0].descriptor.params
        g, pull = centre_aev_pullback(
            centre_species.shape[0], i, j, neighbor_species, vectors, params, self.backend
        )
        gd = g.detach()
        k_members, n_c = self.size, centre_species.shape[0]
        # Features of species absent from this chunk are exactly zero: the first layer
        # (standardisation folded in) and ∂E/∂G skip those columns (a water box evaluated
        # by an H, C, N, O model uses 128 of ANI-1x's 384 features).
        cols = self._columns(neighbor_species, centre_species, params)
        x_all = gd if cols is None else gd.index_select(1, cols)
        energies = torch.zeros((k_members, n_c), dtype=torch.float64, device=g.device)
        de_dg = (
            torch.zeros((k_members, n_c, gd.shape[1]), dtype=gd.dtype, device=g.device)
            if need_grad
            else None
        )
        for s, layers in enumerate(self._stacks):
            idx = torch.nonzero(centre_species == s).squeeze(-1)
            if idx.numel() == 0:
                continue
            x = x_all.index_select(0, idx)  # (n, F')
            w1, b1 = layers[0]
            if cols is not None:
                w1 = w1.index_select(1, cols)
            h1 = torch.einsum("nf,kfh->knh", x, w1) + b1.unsqueeze(1)  # one GEMM for all K
            leaf = h1.detach().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                h = leaf
                for w, b in layers[1:]:
                    h = torch.baddbmm(b.unsqueeze(1), self._act(h), w)
                y = h.squeeze(-1)  # (K, n)
                if need_grad:
                    (gh,) = torch.autograd.grad(y.sum(), leaf)  # (K, n, H1)
                    d = torch.bmm(gh, w1.transpose(1, 2))  # (K, n, F')
                    if cols is None:
                        de_dg[:, idx] = d
                    else:
                        de_dg[:, idx.unsqueeze(1), cols.unsqueeze(0)] = d
            energies[:, idx] = y.detach().to(torch.float64)
        energies = energies + self._self_energies[:, centre_species]
        return energies, (pull if need_grad else None), de_dg

    def forward(
        self,
        batch: Batch,
        forces: bool = True,
        stress: bool = False,
        chunk_atoms: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-member and committee-mean energies (eV), forces (eV/Å), stress (eV/Å³).

        Keys: ``energy`` (K, B), ``energy_mean``/``energy_std`` (B,), ``forces`` (K, N, 3),
        ``forces_mean``/``forces_std`` (N, 3), ``force_spread`` (N,) = ‖std over members‖,
        ``stress`` (K, B, 3, 3) and ``stress_mean`` when asked.
        """
        species = self.species_index(batch.numbers)
        if chunk_atoms is None:  # K members' cotangents (K, C, F) set the chunk's memory
            fused = resolve_backend(self.backend, self.device) != "torch"
            chunk_atoms = max(2048, (131072 if fused else 16384) // self.size)
        ev = evaluate_chunked(
            batch,
            self.cutoff,
            species,
            self.chunk_terms,
            n_members=self.size,
            dtype=self.dtype,
            chunk_atoms=chunk_atoms,
            forces=forces,
            virial=stress,
        )
        out = {
            "energy": ev.energy,
            "energy_mean": ev.energy.mean(0),
            "energy_std": ev.energy.std(0, unbiased=False),
            "atomic_energies": ev.atomic,
        }
        if forces:
            f = ev.forces
            out["forces"] = f
            out["forces_mean"] = f.mean(0)
            out["forces_std"] = f.std(0, unbiased=False)
            out["force_spread"] = torch.linalg.vector_norm(out["forces_std"], dim=-1)
        if stress:
            volume = torch.abs(torch.linalg.det(batch.cell.to(self.dtype)))
            out["stress"] = ev.virial / volume.view(1, -1, 1, 1)
            out["stress_mean"] = out["stress"].mean(0)
        return out

    def predict(self, atoms: Atoms | Sequence[Atoms], forces: bool = True) -> dict[str, np.ndarray]:
        """Committee prediction for one structure or a list (numpy arrays)."""
        structures = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        batch = Batch.from_atoms(structures, dtype=self.dtype, device=self.device)
        return {k: v.detach().cpu().numpy() for k, v in self(batch, forces=forces).items()}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """All members in one file (each as in :meth:`Potential.save`), atomically."""
        from nnp_lab.models.serialization import FORMAT, FORMAT_VERSION

        payload = {
            "format": COMMITTEE_FORMAT,
            "members": [
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "config": m.config.model_dump_json(),
                    "dtype": str(m.dtype).replace("torch.", ""),
                    "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
                }
                for m in self.members
            ],
        }
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Committee:
        """Load a committee written by :meth:`save`."""
        from nnp_lab.models.serialization import read_tagged

        payload = read_tagged(path, COMMITTEE_FORMAT, "nnp-lab committee file")
        members = []
        for k, entry in enumerate(payload["members"]):
            try:
                pot = Potential(config=ModelConfig.model_validate_json(entry["config"]))
                pot.to(getattr(torch, entry.get("dtype", "float32")))
                pot.load_state_dict(entry["state_dict"])
            except Exception as exc:
                raise CheckpointError(f"{path}: member {k} cannot be loaded ({exc})") from None
            members.append(pot)
        return cls(members).to(device)

    def describe(self) -> dict[str, Any]:
        return {"size": self.size, "species": self.species, "backend": self.backend}
