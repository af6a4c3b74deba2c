"""The neural-network potential: descriptors → per-element MLPs → energy, forces, stress."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from nnp_lab.data.batch import Batch
from nnp_lab.errors import InputError, SpeciesError
from nnp_lab.kernels.backend import Pullback, centre_aev_pullback, resolve_backend
from nnp_lab.models.descriptor import ANIDescriptor, DescriptorConfig
from nnp_lab.models.engine import evaluate_chunked
from nnp_lab.models.networks import ACTIVATIONS, ElementNetworks


class ModelConfig(BaseModel):
    """Everything needed to rebuild a :class:`Potential` (saved as JSON with the weights)."""

    model_config = ConfigDict(extra="forbid")

    species: list[str] = Field(min_length=1)
    descriptor: DescriptorConfig = Field(default_factory=DescriptorConfig)
    hidden: list[int] | dict[str, list[int]] = Field(default_factory=lambda: [128, 96, 64])
    activation: str = "celu"
    normalize_descriptors: bool = True

    @field_validator("species")
    @classmethod
    def _known_elements(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in atomic_numbers]
        if bad:
            raise ValueError(f"unknown chemical symbol(s) {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"species listed twice: {v}")
        return sorted(v, key=lambda s: atomic_numbers[s])

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        if v not in ACTIVATIONS:
            raise ValueError(f"unknown activation {v!r}; choose from {sorted(ACTIVATIONS)}")
        return v


class Potential(torch.nn.Module):
    """ANI-style neural-network potential for molecules and periodic cells.

    ``E = Σ_i [ e_{s_i} + σ · NN_{s_i}((G_i − μ)/ς) ]`` with fitted self-energies ``e_s``
    (linear regression), energy scale ``σ`` and descriptor standardisation ``μ, ς``.
    Forces are ``−∂E/∂r`` and stress ``(1/V) ∂E/∂ε`` by autograd.

    Example::

        pot = Potential(species=["H", "O"], descriptor="ani1x")
        pot.predict(atoms)["energy"]
    """

    def __init__(
        self,
        species: Sequence[str] | None = None,
        descriptor: str | DescriptorConfig | dict | None = None,
        hidden: Sequence[int] | dict[str, Sequence[int]] | None = None,
        activation: str = "celu",
        normalize_descriptors: bool = True,
        config: ModelConfig | dict | None = None,
    ):
        super().__init__()
        if config is None:
            if species is None:
                raise InputError("give the species the potential covers, e.g. species=['H', 'O']")
            if isinstance(descriptor, str):
                descriptor = DescriptorConfig.preset(descriptor)
            config = ModelConfig(
                species=list(species),
                descriptor=descriptor or DescriptorConfig(),
                hidden=hidden if hidden is not None else [128, 96, 64],
                activation=activation,
                normalize_descriptors=normalize_descriptors,
            )
        elif isinstance(config, dict):
            config = ModelConfig.model_validate(config)
        self.config = config
        self.species = list(config.species)
        self.descriptor = ANIDescriptor(config.descriptor, len(self.species))
        n_feat = self.descriptor.num_features
        self.networks = ElementNetworks(self.species, n_feat, config.hidden, config.activation)
        z_to_index = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        for k, s in enumerate(self.species):
            z_to_index[atomic_numbers[s]] = k
        self.register_buffer("z_to_index", z_to_index)
        self.register_buffer("self_energies", torch.zeros(len(self.species), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer("feature_mean", torch.zeros(n_feat))
        self.register_buffer("feature_std", torch.ones(n_feat))
        self.register_buffer("prepared", torch.zeros((), dtype=torch.bool))
        self.metadata: dict[str, Any] = {}

    # keep self-energies in float64 whatever dtype the rest of the model uses: total
    # energies of molecules are large (≈ -2000 eV for a water dimer) and float32 would
    # lose the meV that matter.
    def _apply(self, fn, recurse=True):  # type: ignore[override]
        se = self.self_energies.detach().clone()
        super()._apply(fn, recurse)
        self.self_energies = se.to(device=self.feature_mean.device, dtype=torch.float64)
        return self

    # ------------------------------------------------------------------ basics
    @property
    def cutoff(self) -> float:
        """Neighbor-list cutoff (Å)."""
        return self.descriptor.cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.feature_mean.dtype

    @property
    def device(self) -> torch.device:
        return self.feature_mean.device

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """Map atomic numbers to species indices, naming any element the model lacks."""
        numbers = numbers.to(self.z_to_index.device)
        if numbers.numel() and (numbers.min() < 1 or numbers.max() >= len(chemical_symbols)):
            raise InputError(f"invalid atomic numbers {numbers.unique().tolist()}")
        idx = self.z_to_index[numbers]
        if (idx < 0).any():
            unknown = sorted({chemical_symbols[int(z)] for z in numbers[idx < 0].unique()})
            raise SpeciesError(
                f"element(s) {unknown} not covered by this potential, which was built for "
                f"{self.species}; train a model that includes them"
            )
        return idx

    # ------------------------------------------------------------------ evaluation
    def atomic_energies(
        self,
        species: torch.Tensor,
        positions: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor,
        i: torch.Tensor,
        j: torch.Tensor,
        shifts: torch.Tensor,
    ) -> torch.Tensor:
        """Atomic energies (N,) in float64 relative to nothing (self-energies included)."""
        vectors = positions[j] - positions[i] + torch.einsum("pk,pkx->px", shifts, cell[batch[i]])
        g = self.descriptor(species, vectors, i, j)
        if self.config.normalize_descriptors:
            g = (g - self.feature_mean) / self.feature_std
        out = self.networks(g, species) * self.energy_scale
        return out.to(torch.float64) + self.self_energies[species]

    def chunk_terms(
        self,
        vectors: torch.Tensor,
        i: torch.Tensor,
        j: torch.Tensor,
        neighbor_species: torch.Tensor,
        centre_species: torch.Tensor,
        need_grad: bool,
    ) -> tuple[torch.Tensor, Pullback | None, torch.Tensor | None]:
        """Atomic energies (1, C), the descriptor pullback and ∂E/∂G (1, C, F) of C centres.

        ``i`` indexes the centres locally; see :mod:`nnp_lab.models.engine`.
        """
        g, pull = centre_aev_pullback(
            centre_species.shape[0],
            i,
            j,
            neighbor_species,
            vectors,
            self.descriptor.params,
            self.descriptor.backend,
        )
        leaf = g.detach().requires_grad_(need_grad)
        with torch.set_grad_enabled(need_grad):
            x = (
                (leaf - self.feature_mean) / self.feature_std
                if self.config.normalize_descriptors
                else leaf
            )
            out = self.networks(x, centre_species) * self.energy_scale
        energies = (out.detach().to(torch.float64) + self.self_energies[centre_species]).unsqueeze(
            0
        )
        if not need_grad:
            return energies, None, None
        (de_dg,) = torch.autograd.grad(out.sum(), leaf)
        return energies, pull, de_dg.unsqueeze(0)

    def default_chunk_atoms(self) -> int:
        """Atoms per chunk in inference: bounded memory for any system size.

        The torch backend materialises per-triple terms (≈ 4 kB per atom for ANI-1x in
        water), the fused kernels do not, so they take larger chunks.
        """
        backend = resolve_backend(self.descriptor.backend, self.device)
        return 8192 if backend == "torch" else 65536

    def forward(
        self,
        batch: Batch,
        forces: bool = True,
        stress: bool = False,
        create_graph: bool = False,
        chunk_atoms: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Energies (B,) [float64, eV], forces (N, 3) [eV/Å], stress (B, 3, 3) [eV/Å³].

        ``create_graph=True`` keeps the graph of the forces (force training) and evaluates
        the whole batch at once; otherwise atoms are processed in chunks of
        ``chunk_atoms`` (default :meth:`default_chunk_atoms`) with bounded memory.
        """
        if not create_graph:
            return self._forward_chunked(batch, forces, stress, chunk_atoms)
        species = self.species_index(batch.numbers)
        pairs = batch.neighbors(self.cutoff)
        dtype = self.dtype
        pos = batch.positions.to(dtype)
        cell = batch.cell.to(dtype)
        if forces or stress:
            pos = pos.detach().requires_grad_(True)
        inputs = [pos]
        pos_eff, cell_eff = pos, cell
        if stress:
            strain = torch.zeros(
                (batch.n_structures, 3, 3), dtype=dtype, device=pos.device, requires_grad=True
            )
            sym = 0.5 * (strain + strain.transpose(1, 2))
            pos_eff = pos + torch.einsum("nx,nxy->ny", pos, sym[batch.batch])
            cell_eff = cell + torch.bmm(cell, sym)
            inputs.append(strain)
        atomic = self.atomic_energies(
            species, pos_eff, cell_eff, batch.batch, pairs.i, pairs.j, pairs.shifts.to(dtype)
        )
        energy = torch.zeros(batch.n_structures, dtype=torch.float64, device=pos.device)
        energy = energy.index_add(0, batch.batch, atomic)
        out = {"energy": energy, "atomic_energies": atomic}
        if forces or stress:
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=create_graph, allow_unused=True
            )
            if forces:
                g = grads[0] if grads[0] is not None else torch.zeros_like(pos)
                out["forces"] = -g
            if stress:
                virial = grads[-1] if grads[-1] is not None else torch.zeros_like(strain)
                volume = torch.abs(torch.linalg.det(cell))
                out["stress"] = virial / volume.view(-1, 1, 1)
        return out

    def _forward_chunked(
        self, batch: Batch, forces: bool, stress: bool, chunk_atoms: int | None
    ) -> dict[str, torch.Tensor]:
        species = self.species_index(batch.numbers)
        ev = evaluate_chunked(
            batch,
            self.cutoff,
            species,
            self.chunk_terms,
            n_members=1,
            dtype=self.dtype,
            chunk_atoms=chunk_atoms or self.default_chunk_atoms(),
            forces=forces,
            virial=stress,
        )
        out = {"energy": ev.energy[0], "atomic_energies": ev.atomic[0]}
        if forces:
            out["forces"] = ev.forces[0]
        if stress:
            volume = torch.abs(torch.linalg.det(batch.cell.to(self.dtype)))
            out["stress"] = ev.virial[0] / volume.view(-1, 1, 1)
        return out

    def predict(
        self,
        atoms: Atoms | Sequence[Atoms],
        forces: bool = True,
        stress: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Predict energy (eV), forces (eV/Å) and, for 3D-periodic cells, stress (eV/Å³).

        For a single ``Atoms`` returns arrays of that structure; for a list, energies (B,),
        forces (N, 3) of all atoms concatenated, stress (B, 3, 3).
        """
        single = isinstance(atoms, Atoms)
        structures = [atoms] if single else list(atoms)
        if stress is None:
            stress = all(a.pbc.all() and a.cell.rank == 3 for a in structures)
        batch = Batch.from_atoms(structures, dtype=self.dtype, device=self.device)
        self.species_index(batch.numbers)
        out = self(batch, forces=forces, stress=stress)
        res = {k: v.detach().cpu().numpy() for k, v in out.items()}
        if single:
            res["energy"] = float(res["energy"][0])
            if stress:
                res["stress"] = res["stress"][0]
        return res

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def fit_statistics(
        self,
        dataset: Any,
        max_structures: int = 2000,
        seed: int = 0,
        show_progress: bool = False,
    ) -> dict[str, Any]:
        """Fit self-energies (linear regression), descriptor mean/std and the energy scale.

        Self-energies: least squares of total energies against per-element atom counts
        over all labelled structures. Descriptor statistics and the energy scale (RMS of
        the reference forces, or the std of per-atom residual energies when no forces are
        given) use at most ``max_structures`` randomly chosen structures.
        """
        ds = dataset.labelled()
        if len(ds) == 0:
            raise InputError("the dataset has no labelled structures to fit statistics on")
        numbers = ds.numbers
        self.species_index(torch.from_numpy(numbers))
        counts = np.zeros((len(ds), len(self.species)))
        spec = self.z_to_index.cpu().numpy()[numbers]
        owner = np.repeat(np.arange(len(ds)), ds.n_atoms)
        np.add.at(counts, (owner, spec), 1.0)
        energy = ds.energy
        coef, *_ = np.linalg.lstsq(counts, energy, rcond=None)
        self.self_energies.copy_(torch.from_numpy(coef))
        residual = energy - counts @ coef

        rng = np.random.default_rng(seed)
        pick = rng.permutation(len(ds))[:max_structures]
        s1 = torch.zeros(self.descriptor.num_features, dtype=torch.float64)
        s2 = torch.zeros_like(s1)
        n = 0
        it = range(0, len(pick), 64)
        for start in tqdm(it, desc="descriptor statistics", disable=not show_progress):
            sub = ds.subset(pick[start : start + 64])
            batch = sub.to_batch(dtype=torch.float64)
            pairs = batch.neighbors(self.cutoff)
            sp = self.species_index(batch.numbers)
            vec = (
                batch.positions[pairs.j]
                - batch.positions[pairs.i]
                + torch.einsum("pk,pkx->px", pairs.shifts, batch.cell[batch.batch[pairs.i]])
            )
            g = self.descriptor(sp, vec, pairs.i, pairs.j)
            s1 += g.sum(0)
            s2 += (g * g).sum(0)
            n += g.shape[0]
        mean = s1 / n
        std = torch.sqrt(torch.clamp(s2 / n - mean * mean, min=0.0))
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.feature_mean.copy_(mean.to(self.dtype))
        self.feature_std.copy_(std.to(self.dtype))

        f = np.asarray(ds.xr["forces"].values)
        fin = np.isfinite(f).all(axis=1)
        if fin.any():
            scale = float(np.sqrt(np.mean(f[fin] ** 2)))
        else:
            scale = float(np.std(residual / ds.n_atoms))
        self.energy_scale.fill_(max(scale, 1e-3))
        self.prepared.fill_(True)
        return {
            "self_energies": dict(zip(self.species, coef.tolist())),
            "energy_scale": float(self.energy_scale),
            "residual_rmse_per_atom": float(np.sqrt(np.mean((residual / ds.n_atoms) ** 2))),
        }

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        """Save config (JSON) + weights to one file, atomically. See :func:`nnp_lab.load`."""
        from nnp_lab.models.serialization import save_potential

        save_potential(self, path, metadata=metadata)

    @classmethod
    def load(cls, path: str, device: str | torch.device = "cpu") -> Potential:
        """Load a potential saved with :meth:`save`."""
        from nnp_lab.models.serialization import load

        return load(path, device=device)

    def load_weights(self, path: str) -> None:
        """Load weights saved by :meth:`save` into this model (species must match)."""
        from nnp_lab.models.serialization import load_weights_into

        load_weights_into(self, path)


ProgressCallback = Callable[[dict[str, Any]], None]
