"""Energy + force training with AdamW, plateau LR reduction, early stopping and resumable checkpoints."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from nnp_lab._atomic import atomic_write
from nnp_lab.data.batch import Batch
from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import CheckpointError, InputError, SpeciesError
from nnp_lab.models.potential import ModelConfig, Potential
from nnp_lab.models.serialization import read_tagged
from nnp_lab.training.config import TrainConfig

CHECKPOINT_FORMAT = "nnp-lab-checkpoint"
HISTORY_KEYS = (
    "train_loss",
    "val_loss",
    "val_energy_mae",
    "val_energy_rmse",
    "val_force_mae",
    "val_force_rmse",
    "learning_rate",
    "epoch_time",
)
HISTORY_UNITS = {
    "val_energy_mae": "meV/atom",
    "val_energy_rmse": "meV/atom",
    "val_force_mae": "meV/Å",
    "val_force_rmse": "meV/Å",
    "learning_rate": "1",
    "epoch_time": "s",
}

Progress = Callable[[dict[str, Any]], None]


class Trainer:
    """Fit a :class:`Potential` to energies and forces of a :class:`Dataset`.

    Example::

        trainer = Trainer(pot, train, val, TrainConfig(epochs=100), workdir="run")
        history = trainer.fit()          # xarray.Dataset over epochs
        history = trainer.fit(resume=True)  # continues a killed run from its checkpoint

    A checkpoint (weights, optimizer, scheduler, history, early-stopping state) is written
    atomically to ``workdir/checkpoint.pt`` every ``checkpoint_every`` epochs. Data order of
    epoch ``k`` depends only on ``(seed, k)``, so a resumed run reproduces an uninterrupted one.
    """

    def __init__(
        self,
        potential: Potential,
        train: Dataset,
        val: Dataset | None = None,
        config: TrainConfig | dict | None = None,
        workdir: str | os.PathLike | None = None,
        **overrides: Any,
    ):
        if config is None:
            config = TrainConfig(**overrides)
        elif isinstance(config, dict):
            config = TrainConfig(**{**config, **overrides})
        elif overrides:
            config = config.model_copy(update=overrides)
            config = TrainConfig.model_validate(config.model_dump())
        self.config = config
        self.device = config.torch_device()
        self.dtype = config.torch_dtype()
        self.potential = potential
        self.workdir = Path(workdir) if workdir is not None else None
        self.train_set = train.labelled()
        if len(self.train_set) == 0:
            raise InputError(
                "the training set has no labelled structures (status 'ok' with an energy)"
            )
        self.val_set = val.labelled() if val is not None and len(val) else None
        for name, ds in (("training", self.train_set), ("validation", self.val_set)):
            if ds is None:
                continue
            missing = sorted(set(ds.species) - set(potential.species))
            if missing:
                raise SpeciesError(
                    f"the {name} set contains {missing}, which the potential (species "
                    f"{potential.species}) does not cover"
                )
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.epoch = 0
        self.best_val = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self._train_batches: list[Batch] | None = None
        self._val_batches: list[Batch] | None = None

    # ------------------------------------------------------------------ set-up
    def _structures(self, ds: Dataset) -> list[Batch]:
        out = []
        for k in range(len(ds)):
            b = ds.to_batch([k], dtype=self.dtype, device="cpu")
            b.neighbors(self.potential.cutoff)
            out.append(b.to(self.device, self.dtype))
        return out

    def _build(self) -> None:
        pot = self.potential
        if not bool(pot.prepared):
            pot.fit_statistics(self.train_set, seed=self.config.seed)
        pot.to(device=self.device, dtype=self.dtype)
        if self._train_batches is None:
            self._train_batches = self._structures(self.train_set)
            self._val_batches = self._structures(self.val_set) if self.val_set is not None else []
        decay, no_decay = [], []
        for name, p in pot.named_parameters():
            (decay if name.endswith("weight") else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.config.learning_rate,
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=self.config.lr_factor,
            patience=self.config.lr_patience,
            min_lr=self.config.min_lr,
        )

    # ------------------------------------------------------------------ loss
    def _loss(
        self, batch: Batch, create_graph: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        use_forces = cfg.force_weight > 0 and batch.forces is not None
        out = self.potential(batch, forces=use_forces, create_graph=create_graph)
        n = batch.n_atoms.to(torch.float64)
        de = (out["energy"] - batch.energy.to(torch.float64)) / n
        loss = cfg.energy_weight * (de**2).mean()
        parts = {"de": de.detach()}
        if use_forces:
            df = out["forces"] - batch.forces
            mask = torch.isfinite(batch.forces)
            if mask.any():
                df = torch.where(mask, df, torch.zeros_like(df))
                loss = loss + cfg.force_weight * (df**2).sum().to(torch.float64) / mask.sum()
                parts["df"] = df.detach()[mask]
        return loss, parts

    def _validate(self) -> dict[str, float]:
        if not self._val_batches:
            return {}
        pot = self.potential
        pot.eval()
        des, dfs, losses, weights = [], [], [], []
        size = max(self.config.batch_size, 32)
        for start in range(0, len(self._val_batches), size):
            batch = Batch.cat(self._val_batches[start : start + size])
            loss, parts = self._loss(batch, create_graph=False)
            losses.append(float(loss.detach()))
            weights.append(batch.n_structures)
            des.append(parts["de"].cpu().numpy())
            if "df" in parts:
                dfs.append(parts["df"].cpu().numpy())
        de = np.concatenate(des)
        res = {
            "val_loss": float(np.average(losses, weights=weights)),
            "val_energy_mae": 1000 * float(np.mean(np.abs(de))),
            "val_energy_rmse": 1000 * float(np.sqrt(np.mean(de**2))),
        }
        if dfs:
            df = np.concatenate(dfs)
            res["val_force_mae"] = 1000 * float(np.mean(np.abs(df)))
            res["val_force_rmse"] = 1000 * float(np.sqrt(np.mean(df**2)))
        return res

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.workdir is None else self.workdir / "checkpoint.pt"

    def save_checkpoint(self) -> Path:
        """Write the full training state atomically to ``workdir/checkpoint.pt``."""
        if self.checkpoint_path is None:
            raise InputError("no workdir given: cannot write a checkpoint")
        payload = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model_config": self.potential.config.model_dump_json(),
            "train_config": self.config.model_dump_json(),
            "model_state": {k: v.detach().cpu() for k, v in self.potential.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": json.dumps(self.history),
            "best_val": self.best_val,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "dataset_hash": self.train_set.content_hash(),
        }
        return atomic_write(self.checkpoint_path, lambda tmp: torch.save(payload, tmp))

    def _load_checkpoint(self, path: Path) -> None:
        ck = read_tagged(path, CHECKPOINT_FORMAT, "nnp-lab training checkpoint")
        saved = ModelConfig.model_validate_json(ck["model_config"])
        if saved.species != self.potential.species:
            raise SpeciesError(
                f"checkpoint {path} is for species {saved.species} but the potential being "
                f"trained has {self.potential.species}; use another workdir or matching species"
            )
        if saved != self.potential.config:
            raise CheckpointError(
                f"checkpoint {path} was made for a different model architecture; "
                "use another workdir or the same model config"
            )
        if ck.get("dataset_hash") != self.train_set.content_hash():
            raise CheckpointError(
                f"checkpoint {path} was made with a different training set; "
                "resume with the same data (and split seed) or start in a new workdir"
            )
        self.potential.load_state_dict(ck["model_state"])
        self.potential.to(device=self.device, dtype=self.dtype)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.history = json.loads(ck["history"])
        self.epoch = int(ck["epoch"])
        self.best_val = float(ck["best_val"])
        self.best_state = ck["best_state"]
        self.bad_epochs = int(ck["bad_epochs"])
        self.stopped_early = bool(ck.get("stopped_early", False))

    # ------------------------------------------------------------------ main loop
    def fit(
        self,
        resume: bool = False,
        progress: Progress | None = None,
        show_progress: bool = True,
        stop_after: int | None = None,
    ) -> xr.Dataset:
        """Train; returns the metrics history (``xarray.Dataset`` over ``epoch``).

        Args:
            resume: continue from ``workdir/checkpoint.pt`` if it exists.
            progress: called after every epoch with a dict of the epoch's metrics; an
                exception raised by it stops training and propagates.
            show_progress: show a ``tqdm`` bar.
            stop_after: stop after this epoch number (for staged runs); ``None`` = run to
                ``config.epochs`` or early stopping.
        """
        cfg = self.config
        self._build()
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._load_checkpoint(self.checkpoint_path)
        last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
        bar = tqdm(
            total=cfg.epochs,
            initial=self.epoch,
            desc="training",
            unit="epoch",
            disable=not show_progress,
        )
        n_train = len(self._train_batches)
        try:
            while self.epoch < last and not self.stopped_early:
                t0 = time.perf_counter()
                self.potential.train()
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
                order = torch.randperm(n_train, generator=gen).tolist()
                total, count = 0.0, 0
                for start in range(0, n_train, cfg.batch_size):
                    batch = Batch.cat(
                        [self._train_batches[k] for k in order[start : start + cfg.batch_size]]
                    )
                    loss, _ = self._loss(batch, create_graph=True)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"training loss became {float(loss)} at epoch {self.epoch + 1}; "
                            "lower the learning_rate or check the dataset for outliers"
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(
                            self.potential.parameters(), cfg.max_grad_norm
                        )
                    self.optimizer.step()
                    total += float(loss.detach()) * batch.n_structures
                    count += batch.n_structures
                self.epoch += 1
                val = self._validate()
                monitor = val.get("val_loss", total / count)
                self.scheduler.step(monitor)
                # same relative threshold as ReduceLROnPlateau (1e-4): noise is no progress
                if monitor < self.best_val * (1.0 - 1e-4):
                    self.best_val = monitor
                    self.best_state = {
                        k: v.detach().cpu().clone() for k, v in self.potential.state_dict().items()
                    }
                    self.bad_epochs = 0
                else:
                    self.bad_epochs += 1
                    if self.bad_epochs >= cfg.early_stopping_patience:
                        self.stopped_early = True
                record = {
                    "train_loss": total / count,
                    "learning_rate": self.optimizer.param_groups[0]["lr"],
                    "epoch_time": time.perf_counter() - t0,
                    **val,
                }
                for k in HISTORY_KEYS:
                    self.history[k].append(float(record.get(k, float("nan"))))
                if self.workdir is not None and (
                    self.epoch % cfg.checkpoint_every == 0
                    or self.epoch == last
                    or self.stopped_early
                ):
                    self.save_checkpoint()
                bar.update(1)
                bar.set_postfix(
                    {k.replace("val_", ""): f"{v:.3g}" for k, v in val.items() if k.endswith("mae")}
                )
                if progress is not None:
                    progress(
                        {
                            "epoch": self.epoch,
                            "epochs": cfg.epochs,
                            "stopped_early": self.stopped_early,
                            **record,
                        }
                    )
        finally:
            bar.close()
        done = self.epoch >= cfg.epochs or self.stopped_early
        if done and cfg.restore_best and self.best_state is not None:
            self.potential.load_state_dict(self.best_state)
            self.potential.to(device=self.device, dtype=self.dtype)
        self.potential.metadata.update(
            {
                "dataset_hash": self.train_set.content_hash(),
                "reference_methods": self.train_set.summary()["methods"],
                "epochs_trained": self.epoch,
                "train_config": json.loads(self.config.model_dump_json()),
            }
        )
        hist = self.history_dataset()
        if self.workdir is not None and done:
            atomic_write(
                self.workdir / "metrics.nc", lambda tmp: hist.to_netcdf(tmp, engine="h5netcdf")
            )
        return hist

    def history_dataset(self) -> xr.Dataset:
        """The metrics history as an ``xarray.Dataset`` with dim ``epoch``."""
        n = len(self.history["train_loss"])
        data = xr.Dataset(
            {k: ("epoch", np.asarray(v, dtype=float)) for k, v in self.history.items()},
            coords={"epoch": np.arange(1, n + 1)},
        )
        for k, u in HISTORY_UNITS.items():
            data[k].attrs["units"] = u
        data.attrs["best_val_loss"] = (
            self.best_val if math.isfinite(self.best_val) else float("nan")
        )
        data.attrs["stopped_early"] = int(self.stopped_early)
        data.attrs["dataset_hash"] = self.train_set.content_hash()
        return data
