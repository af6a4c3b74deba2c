"""An nnp-lab committee trained on dimer interaction energies E(AB) − E(A) − E(B).

The members are ordinary :class:`~nnp_lab.models.potential.Potential` s (atomic energies
from ANI descriptors). Training fits the *interaction* energy computed exactly as it is
predicted: the model's energy of the dimer minus its energies of the two isolated
monomers (same geometries), so self-energies and every intramolecular term cancel
identically and the interaction is zero, to round-off, once the monomers are farther apart
than the descriptor cutoff. The rigid monomers' descriptors do not change during
training, so they are computed once and only the networks are optimised (full batch,
AdamW, early stopping on a validation split).

The descriptor is ANI-like with longer cutoffs (8 Å radial, 4.5 Å angular) than ANI-1x
(5.2 / 3.5 Å): the H-bond's electrostatic tail reaches further than a covalent bond.

Members differ in their initial weights and their Bayesian-bootstrap (Dirichlet) weights
on the training points; their spread is the committee's uncertainty.
"""

from __future__ import annotations

import copy
import json
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nnp_lab._atomic import atomic_write_text
from nnp_lab.apps.hbond.dimer_data import KCAL, scan_structures
from nnp_lab.apps.hbond.dimers import monomer_key, monomers_of
from nnp_lab.data.batch import Batch
from nnp_lab.errors import InputError
from nnp_lab.models.combine import summed_potential
from nnp_lab.models.committee import Committee
from nnp_lab.models.descriptor import DescriptorConfig, linear_shifts
from nnp_lab.models.potential import ModelConfig, Potential

SPECIES = ("H", "C", "N", "O")
#: scan family of points chosen by committee disagreement (never held out for testing)
ACTIVE_FAMILY = "active"
FAR_FAMILY = "far"
#: families that always train: chosen on purpose (committee spread, the decay), not a
#: random sample of the scan, so they would bias a held-out test
TRAIN_ONLY_FAMILIES = (ACTIVE_FAMILY, FAR_FAMILY)


def hbond_descriptor() -> DescriptorConfig:
    """ANI-type descriptor with 8 Å radial / 4.5 Å angular cutoffs (see module docstring)."""
    return DescriptorConfig(
        radial_cutoff=8.0,
        radial_eta=6.0,
        radial_shifts=linear_shifts(0.8, 8.0, 24),
        angular_cutoff=4.5,
        angular_eta=8.0,
        zeta=32.0,
        angular_shifts=linear_shifts(0.9, 4.5, 6),
        sections=linear_shifts(math.pi / 16, math.pi + math.pi / 16, 8),
    )


class InteractionTrainConfig(BaseModel):
    """Hyperparameters of :func:`train_interaction_committee`."""

    model_config = ConfigDict(extra="forbid")

    members: int = Field(4, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    activation: str = "celu"
    batch_points: int = Field(32, ge=1, description="dimers per optimisation step")
    pretrain_epochs: int = Field(150, ge=0, description="epochs on the cheap-level points")
    epochs: int = Field(400, ge=1, description="epochs on the reference points")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW rate on the cheap-level points")
    finetune_learning_rate: float = Field(
        3e-4,
        gt=0,
        description="AdamW rate on the reference points (lower: the pretrained surface moves "
        "less; held-out MAE 0.23 → 0.21 kcal/mol on water–ammonia)",
    )
    weight_decay: float = Field(1e-4, ge=0)
    residual_hidden: list[int] | None = Field(
        None,
        description="with pretraining: freeze the xTB-pretrained network and fit a separate "
        "correction network of these widths (same depth) to reference − pretrained; the two "
        "are summed into one Potential. None: fine-tune the pretrained network itself",
    )
    residual_weight_decay: float = Field(
        1e-3, ge=0, description="AdamW weight decay of the correction network"
    )
    patience: int = Field(80, ge=1, description="epochs without validation gain before stop")
    repulsive_scale: float = Field(
        10.0, gt=0, description="kcal/mol: points above 0 weigh 1 / (1 + (E / scale)²)"
    )
    balance_dimers: bool = Field(
        True,
        description="every dimer carries the same total weight in the loss and the "
        "validation score is the mean of the per-dimer MAEs (the issue bounds each dimer)",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _residual_depth(self) -> InteractionTrainConfig:
        if self.residual_hidden is not None and len(self.residual_hidden) != len(self.hidden):
            raise ValueError(
                f"residual_hidden {self.residual_hidden} must have as many layers as "
                f"hidden {self.hidden} (the two networks are summed layer by layer)"
            )
        return self


@dataclass
class _Features:
    """Descriptors of the dimers (per point) and of the distinct rigid monomers.

    E_int[p] = Σ_{atoms of dimer p} ε − E_mono[mono_a[p]] − E_mono[mono_b[p]]; rigid
    monomers recur at every point of a dimer, so each distinct one is described once.
    """

    features: torch.Tensor  # (N, F) dimer atoms
    species: torch.Tensor  # (N,)
    point: torch.Tensor  # (N,) owning point
    mono_features: torch.Tensor  # (M_atoms, F)
    mono_species: torch.Tensor  # (M_atoms,)
    mono_owner: torch.Tensor  # (M_atoms,) which distinct monomer
    mono_a: torch.Tensor  # (P,) distinct monomer of the first part
    mono_b: torch.Tensor  # (P,)
    n_points: int
    n_monomers: int

    def subset(self, points: torch.Tensor) -> _Features:
        """The same features restricted to ``points`` (renumbered 0…len−1)."""
        new = torch.full((self.n_points,), -1, dtype=torch.long)
        new[points] = torch.arange(len(points))
        keep = new[self.point] >= 0
        return _Features(
            self.features[keep],
            self.species[keep],
            new[self.point[keep]],
            self.mono_features,
            self.mono_species,
            self.mono_owner,
            self.mono_a[points],
            self.mono_b[points],
            len(points),
            self.n_monomers,
        )


def _descriptors(pot: Potential, structures: Sequence[Atoms]) -> tuple[torch.Tensor, ...]:
    batch = Batch.from_atoms(list(structures), dtype=torch.float64)
    pairs = batch.neighbors(pot.cutoff)
    sp = pot.species_index(batch.numbers)
    cell = batch.cell[batch.batch[pairs.i]]
    vec = (
        batch.positions[pairs.j]
        - batch.positions[pairs.i]
        + torch.einsum("pk,pkx->px", pairs.shifts.to(torch.float64), cell)
    )
    g = copy.deepcopy(pot.descriptor).to(torch.float64)(sp, vec, pairs.i, pairs.j)
    return g.to(torch.float32), sp, batch.batch


@torch.no_grad()
def _features(pot: Potential, dimers: Sequence[Atoms], chunk: int = 512) -> _Features:
    keys: dict[bytes, int] = {}
    monos: list[Atoms] = []
    ma, mb = [], []
    for d in dimers:
        for part, out in zip(monomers_of(d), (ma, mb)):
            key = monomer_key(part)
            if key not in keys:
                keys[key] = len(monos)
                monos.append(part)
            out.append(keys[key])
    gs, sps, pts = [], [], []
    for start in range(0, len(dimers), chunk):
        part = [Atoms(d.numbers, d.positions) for d in dimers[start : start + chunk]]
        g, sp, owner = _descriptors(pot, part)
        gs.append(g)
        sps.append(sp)
        pts.append(owner + start)
    mg, msp, mown = _descriptors(pot, monos)
    return _Features(
        torch.cat(gs),
        torch.cat(sps),
        torch.cat(pts),
        mg,
        msp,
        mown,
        torch.as_tensor(ma),
        torch.as_tensor(mb),
        len(dimers),
        len(monos),
    )


def _interaction(pot: Potential, f: _Features) -> torch.Tensor:
    """Model interaction energies (P,) in eV from precomputed descriptors."""

    def energies(g: torch.Tensor, sp: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
        x = (g.to(pot.dtype) - pot.feature_mean) / pot.feature_std
        atomic = (pot.networks(x, sp) * pot.energy_scale).to(torch.float64)
        return torch.zeros(n, dtype=torch.float64).index_add(0, owner, atomic)

    e_ab = energies(f.features, f.species, f.point, f.n_points)
    e_m = energies(f.mono_features, f.mono_species, f.mono_owner, f.n_monomers)
    return e_ab - e_m[f.mono_a] - e_m[f.mono_b]


def held_out_split(
    dimer_names: np.ndarray,
    test_fraction: float = 0.15,
    val_fraction: float = 0.1,
    seed: int = 0,
    families: np.ndarray | None = None,
) -> np.ndarray:
    """``train`` / ``val`` / ``test`` label per point, drawn per dimer.

    Each dimer's draw is seeded by ``seed`` and the dimer's name alone, so a dimer's test
    points stay the same whichever other dimers are trained beside it. Points of the
    ``active`` family (placed where a committee disagreed most, see
    :mod:`~nnp_lab.apps.hbond.active_scan`) and of the ``far`` family (reference points
    appended in the decay, 1–5 Å beyond equilibrium) are not a random sample of the scan:
    they always train, and the split of the other points is the one drawn without them.
    """
    dimer_names = np.asarray(dimer_names)
    if families is not None and len(families) != len(dimer_names):
        raise InputError("families must have one entry (the scan family) per point")
    train_only = (
        np.isin(np.asarray(families), TRAIN_ONLY_FAMILIES)
        if families is not None
        else np.zeros(len(dimer_names), bool)
    )
    out = np.full(len(dimer_names), "train", dtype=object)
    for name in sorted(set(dimer_names)):
        idx = np.nonzero((dimer_names == name) & ~train_only)[0]
        if not len(idx):
            continue
        rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        perm = rng.permutation(idx)
        n_test = max(1, round(test_fraction * len(idx)))
        n_val = max(1, round(val_fraction * len(idx)))
        out[perm[:n_test]] = "test"
        out[perm[n_test : n_test + n_val]] = "val"
    return out.astype(str)


def labelled(ds: xr.Dataset) -> np.ndarray:
    """Mask of the scan points with a reference interaction energy (the training points)."""
    return (ds["status"].values == "ok") & np.isfinite(ds["e_int"].values)


def training_points(scans: Sequence[xr.Dataset]) -> tuple[list[Atoms], np.ndarray, np.ndarray]:
    """Dimers with a reference energy from scan datasets: (structures, E_int kcal/mol, dimer)."""
    dimers, energy, names = [], [], []
    for ds in scans:
        structures = scan_structures(ds)
        for k in np.nonzero(labelled(ds))[0]:
            dimers.append(structures[k])
            energy.append(float(ds["e_int"].values[k]))
            names.append(ds.attrs["dimer"])
    if not dimers:
        raise InputError("the scans hold no labelled points to train on")
    return dimers, np.array(energy), np.array(names)


def point_families(scans: Sequence[xr.Dataset]) -> np.ndarray:
    """The scan family of every point :func:`training_points` returns, in its order."""
    return np.concatenate([ds["family"].values[labelled(ds)].astype(str) for ds in scans])


def _weights(e_int: np.ndarray, scale: float) -> torch.Tensor:
    positive = np.clip(np.asarray(e_int, dtype=float), 0.0, None)
    return torch.as_tensor(1.0 / (1.0 + (positive / scale) ** 2))


def _group_balance(groups: np.ndarray, points: np.ndarray) -> torch.Tensor:
    """Per-point factor giving each group the same total weight over ``points``."""
    factor = np.ones(len(groups))
    names = sorted(set(groups[points]))
    for name in names:
        sel = groups == name
        factor[sel] = len(points) / (len(names) * np.count_nonzero(sel[points]))
    return torch.as_tensor(factor)


def _fit(
    pot: Potential,
    feats: _Features,
    target: torch.Tensor,
    weight: torch.Tensor,
    train: torch.Tensor,
    val: torch.Tensor,
    cfg: InteractionTrainConfig,
    epochs: int,
    rng: np.random.Generator,
    desc: str,
    show_progress: bool,
    val_groups: np.ndarray | None = None,
    learning_rate: float | None = None,
) -> list[float]:
    """Minibatch AdamW on the weighted squared error; keeps the best validation score
    (MAE, or the mean of per-group MAEs when ``val_groups`` labels the ``val`` points)."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(
        pot.networks.parameters(),
        lr=learning_rate or cfg.learning_rate,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=20, min_lr=1e-5)
    val_feats = feats.subset(val)
    best, best_state, bad, hist = math.inf, None, 0, []
    for _ in tqdm(range(epochs), desc=desc, disable=not show_progress):
        order = train[torch.as_tensor(rng.permutation(len(train)))]
        for start in range(0, len(order), cfg.batch_points):
            idx = order[start : start + cfg.batch_points]
            w = weight[idx]
            opt.zero_grad()
            pred = _interaction(pot, feats.subset(idx))
            loss = (w * (pred - target[idx]) ** 2).sum() / w.sum() / KCAL**2
            loss.backward()
            opt.step()
        with torch.no_grad():
            err = ((_interaction(pot, val_feats) - target[val]).abs() / KCAL).numpy()
        if val_groups is None:
            v = float(err.mean())
        else:
            v = float(np.mean([err[val_groups == g].mean() for g in sorted(set(val_groups))]))
        sched.step(v)
        hist.append(v)
        if v < best - 1e-5:
            best, bad = v, 0
            best_state = {n: t.detach().clone() for n, t in pot.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        pot.load_state_dict(best_state)
    return hist


def _prepared_potential(
    model_cfg: ModelConfig, mean: torch.Tensor, std: torch.Tensor, scale: float
) -> Potential:
    """A fresh float32 member with the descriptor standardisation and energy scale set."""
    pot = Potential(config=model_cfg).to(torch.float32)
    pot.feature_mean.copy_(mean)
    pot.feature_std.copy_(std)
    pot.energy_scale.fill_(max(scale, 1e-4))
    pot.prepared.fill_(True)
    return pot


def train_interaction_committee(
    dimers: Sequence[Atoms],
    e_int: np.ndarray,
    split: np.ndarray,
    config: InteractionTrainConfig | dict | None = None,
    pretrain: tuple[Sequence[Atoms], np.ndarray] | None = None,
    show_progress: bool = False,
    groups: np.ndarray | None = None,
) -> tuple[Committee, dict[str, Any]]:
    """Train the committee on ``e_int`` (kcal/mol) of the ``train`` points, with early
    stopping on ``val``; returns the committee and a report.

    ``groups`` (the dimer of each point) lets ``balance_dimers`` weigh the dimers equally.

    ``pretrain = (dimers, e_int)`` at a cheap level (GFN2-xTB) are fitted first (90/10
    split for early stopping): thousands of cheap points teach the shape of the 6D surface,
    the reference points then correct the level — the model itself stays a pure NNP.
    With ``residual_hidden`` the pretrained network is frozen and a separate correction
    network learns reference − pretrained: the frozen network keeps the 6D shape it
    learned from thousands of xTB points wherever the few reference points say nothing,
    the small, weight-decayed correction learns the smoother reference − xTB difference;
    the two are summed into one Potential.
    """
    cfg = (
        config
        if isinstance(config, InteractionTrainConfig)
        else InteractionTrainConfig(**(config or {}))
    )
    e_int = np.asarray(e_int, dtype=float)
    split = np.asarray(split)
    if len(dimers) != len(e_int) or len(split) != len(e_int):
        raise InputError("dimers, e_int and split must have one entry per point")
    if not (split == "train").any():
        raise InputError("no training points (split has no 'train')")
    if not np.isfinite(e_int[split != "test"]).all():
        raise InputError("training/validation energies must be finite")
    if cfg.residual_hidden and (pretrain is None or cfg.pretrain_epochs == 0):
        raise InputError(
            "residual_hidden fits a correction on top of the xTB-pretrained network: give "
            "pretrain=(dimers, e_int) and pretrain_epochs > 0, or drop residual_hidden"
        )
    if groups is not None and len(groups) != len(e_int):
        raise InputError("groups must have one entry (the dimer's name) per point")
    model_cfg = ModelConfig(
        species=list(SPECIES),
        descriptor=hbond_descriptor(),
        hidden=cfg.hidden,
        activation=cfg.activation,
    )
    template = Potential(config=model_cfg).to(torch.float64)
    feats = _features(template, dimers)
    target = torch.as_tensor(e_int * KCAL, dtype=torch.float64)
    weight = _weights(e_int, cfg.repulsive_scale)
    tr = torch.as_tensor(np.nonzero(split == "train")[0])
    va = torch.as_tensor(np.nonzero(split == "val")[0]) if (split == "val").any() else tr
    val_groups = None
    if groups is not None and cfg.balance_dimers:
        groups = np.asarray(groups).astype(str)
        weight = weight * _group_balance(groups, tr.numpy())
        val_groups = groups[va.numpy()]
    pre = None
    if pretrain is not None and cfg.pretrain_epochs > 0:
        p_dimers, p_e = pretrain
        p_e = np.asarray(p_e, dtype=float)
        ok = np.isfinite(p_e)
        p_dimers = [d for d, o in zip(p_dimers, ok) if o]
        p_e = p_e[ok]
        perm = np.random.default_rng(cfg.seed).permutation(len(p_e))
        n_val = max(1, len(p_e) // 10)
        pre = (
            _features(template, p_dimers),
            torch.as_tensor(p_e * KCAL, dtype=torch.float64),
            _weights(p_e, cfg.repulsive_scale),
            torch.as_tensor(np.sort(perm[n_val:])),
            torch.as_tensor(np.sort(perm[:n_val])),
        )
    g = (pre[0] if pre is not None else feats.subset(tr)).features
    mean, std = g.mean(0), g.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    members, report = [], {"members": []}
    for k in range(cfg.members):
        torch.manual_seed(cfg.seed * 7919 + k)
        rng = np.random.default_rng([cfg.seed, k])
        pot = _prepared_potential(model_cfg, mean, std, float(target[tr].std()) / 4.0)
        entry: dict[str, Any] = {}
        if pre is not None:
            pf, pt, pw, ptr, pva = pre
            h = _fit(
                pot,
                pf,
                pt,
                pw,
                ptr,
                pva,
                cfg,
                cfg.pretrain_epochs,
                rng,
                f"member {k} pretrain",
                show_progress,
            )
            entry.update(pretrain_epochs=len(h), pretrain_best_val_mae=min(h))
        w = weight.clone()
        if cfg.members > 1:  # Bayesian bootstrap: Dirichlet weights on the training points
            w[tr] = w[tr] * torch.as_tensor(rng.dirichlet(np.ones(len(tr))) * len(tr))
        fit_pot, fit_target, fit_cfg = pot, target, cfg
        lr = cfg.finetune_learning_rate if pre is not None else cfg.learning_rate
        if cfg.residual_hidden:  # freeze pot; fit a correction to reference − pot
            with torch.no_grad():
                fit_target = target - _interaction(pot, feats)
            fit_pot = _prepared_potential(
                model_cfg.model_copy(update={"hidden": cfg.residual_hidden}),
                mean,
                std,
                float(fit_target[tr].std()) / 4.0,
            )
            fit_cfg = cfg.model_copy(update={"weight_decay": cfg.residual_weight_decay})
            lr = cfg.learning_rate
        h = _fit(
            fit_pot,
            feats,
            fit_target,
            w,
            tr,
            va,
            fit_cfg,
            cfg.epochs,
            rng,
            f"member {k}",
            show_progress,
            val_groups,
            lr,
        )
        if cfg.residual_hidden:
            pot = summed_potential(pot, fit_pot)
        entry.update(epochs=len(h), best_val_mae=min(h))
        pot.metadata = {"trained_on": "dimer interaction energies", "member": k}
        members.append(pot)
        report["members"].append(entry)
    return Committee(members), report


@torch.no_grad()
def interaction_energies(
    model: Committee | Potential, dimers: Sequence[Atoms]
) -> dict[str, np.ndarray]:
    """Model interaction energies in kcal/mol: ``mean`` (P,), ``std`` (P,), ``members`` (K, P).

    Each dimer needs ``info['n_donor']``; the monomers are the dimer's two parts at the
    same geometry.
    """
    com = model if isinstance(model, Committee) else Committee([model])
    structures, sign, owner = [], [], []
    for k, d in enumerate(dimers):
        for s, x in zip((1.0, -1.0, -1.0), (Atoms(d.numbers, d.positions), *monomers_of(d))):
            structures.append(x)
            sign.append(s)
            owner.append(k)
    sign, owner = np.array(sign), np.array(owner)
    batch = Batch.from_atoms(structures, dtype=com.dtype, device=com.device)
    energy = com(batch, forces=False)["energy"].cpu().numpy()  # (K, 3P) eV
    members = np.zeros((energy.shape[0], len(dimers)))
    np.add.at(members.T, owner, (energy * sign).T)
    members /= KCAL
    return {"mean": members.mean(0), "std": members.std(0), "members": members}


def save_model(model: Committee, path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """The committee (``path``) and its training report (``path`` with ``.json``)."""
    out = model.save(path)
    atomic_write_text(Path(path).with_suffix(".json"), json.dumps(report, indent=1, sort_keys=True))
    return out
