"""The committee active-learning loop, persisted after every stage.

Iteration 0 builds the initial data (geometries from the dataset-build sources, labelled
by the oracle), trains the committee and calibrates its spread. Every later iteration:

    explore  → candidates.nc   (MD on the committee mean, stop-and-ask rule)
    select   → selected.json   (threshold + farthest points in descriptor space, budget)
    label    → labelled.nc, train.nc, val.nc   (oracle on Dask; cache written per result)
    train    → committee.pt, calibration.json, metrics (warm start from the last committee)

All files of iteration k live in ``workdir/iter_<k>/`` and are written atomically;
``workdir/state.json`` names the last completed stage. A killed run started again with
the same config continues after that stage: a stage that was interrupted is redone from
its inputs, which are unchanged (explorers are seeded per iteration; labels come from the
cache), so no label is lost or paid twice and no structure enters the data twice.
The record of all iterations (``al_log.nc``) is an ``xarray.Dataset`` over ``iteration``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field

from nnp_lab._atomic import atomic_write, atomic_write_text
from nnp_lab.active.explore import ExploreConfig, explore
from nnp_lab.active.members import CommitteeConfig, train_committee
from nnp_lab.active.oracle import DaskOracle, OracleConfig
from nnp_lab.active.record import STAGES, IterationRecord, write_log
from nnp_lab.active.select import fingerprints, select_candidates
from nnp_lab.active.uncertainty import Calibration, calibrate, committee_predictions
from nnp_lab.data.build import Source, StructureSpec, _sample
from nnp_lab.data.dataset import Dataset
from nnp_lab.data.labelers import make_labeler
from nnp_lab.errors import ConfigError, InputError
from nnp_lab.models.committee import Committee
from nnp_lab.training.config import TrainConfig
from nnp_lab.training.run import ModelSection

STATE_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectConfig(_Strict):
    """How many explored frames go to the reference per iteration, and which."""

    budget: int = Field(8, ge=1, description="labels per iteration")
    prefilter: int | None = Field(
        None, ge=1, description="only the N most uncertain candidates enter the diversity step"
    )


class StopConfig(_Strict):
    """When the loop ends (whichever comes first)."""

    max_iterations: int = Field(5, ge=0)
    max_labels: int | None = Field(None, ge=1, description="reference calculations in total")
    target_force_rmse: float | None = Field(
        None, gt=0, description="meV/Å on the test set (validation set without one)"
    )
    min_candidates: int = Field(
        1, ge=0, description="stop when an exploration finds fewer candidates than this"
    )


class ActiveLearningConfig(_Strict):
    """``nnp-lab active-learn CONFIG``: everything the loop needs (YAML/JSON)."""

    workdir: str = "al_run"
    labeler: dict[str, Any] = Field(description="reference, e.g. {kind: emt} or {kind: xtb}")
    cache: str = Field("labels.sqlite", description="label cache (relative to workdir)")
    initial: list[Source] = Field(min_length=1, description="dataset-build sources, seed data")
    test: list[Source] = Field(
        default_factory=list, description="sources of an independent test set (never trained on)"
    )
    starts: list[StructureSpec] = Field(min_length=1, description="explorer start structures")
    model: ModelSection = Field(default_factory=ModelSection)
    committee: CommitteeConfig = Field(default_factory=CommitteeConfig)
    training: TrainConfig = Field(default_factory=TrainConfig)
    retraining: TrainConfig | None = Field(
        None, description="warm-start training after new labels (default: training, 1/3 epochs)"
    )
    validation_fraction: float = Field(0.15, ge=0, lt=1)
    calibrate: bool = True
    explore: ExploreConfig = Field(default_factory=ExploreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    oracle: OracleConfig = Field(default_factory=OracleConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    seed: int = 0

    def retrain_config(self) -> TrainConfig:
        if self.retraining is not None:
            return self.retraining
        return self.training.model_copy(update={"epochs": max(1, self.training.epochs // 3)})

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not workdir or oracle placement)."""
        d = json.loads(self.model_dump_json())
        for k in ("workdir", "oracle"):
            d.pop(k, None)
        d["stop"] = None  # extending a finished run with more iterations is allowed
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def core_fingerprint(self) -> str:
        """Hash of what the finished iterations' data and models depend on. Steering —
        ``explore``, ``select``, ``starts`` and ``stop`` — may change when a run is resumed:
        later iterations explore differently, earlier ones stay as they were (every
        iteration writes the exploration settings it used to ``explore_config.json``)."""
        d = json.loads(self.model_dump_json())
        for k in ("workdir", "oracle", "stop", "explore", "select", "starts"):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- helpers
def _save_nc(path: Path, data: xr.Dataset) -> None:
    atomic_write(path, lambda tmp: data.to_netcdf(tmp, engine="h5netcdf"))


def _committee_metrics(committee: Committee, data: Dataset | None) -> dict[str, float]:
    """Energy MAE (meV/atom), force MAE/RMSE (meV/Å) of the committee mean on ``data``."""
    if data is None or len(data.labelled()) == 0:
        return {}
    data = data.labelled()
    pred = committee_predictions(committee, data)
    de = (pred["energy_mean"].values - data.energy) / data.n_atoms
    ref = np.asarray(data.xr["forces"].values)
    ok = np.isfinite(ref).all(axis=1)
    df = (pred["forces_mean"].values - ref)[ok]
    return {
        "energy_mae": 1000 * float(np.mean(np.abs(de))),
        "force_mae": 1000 * float(np.mean(np.abs(df))) if df.size else float("nan"),
        "force_rmse": 1000 * float(np.sqrt(np.mean(df**2))) if df.size else float("nan"),
    }


def _geometries(sources: list[Any], labeler: Any, seed: int, base: Path) -> list[Atoms]:
    """Structures from dataset-build sources; MD sources come labelled by the reference."""
    out: list[Atoms] = []
    for s_index, src in enumerate(sources):
        sd = seed + 1000 * s_index if src.seed is None else src.seed
        for k, spec in enumerate(src.structures):
            for m, atoms in enumerate(spec.build(base)):
                name = atoms.info.get("source", "")
                for a in _sample(src, atoms, labeler, sd + 101 * k + 13 * m):
                    how = a.info.get("source", "")
                    a.info["source"] = (
                        name if src.kind == "structures" or not how else f"{name}: {how}"
                    )
                    out.append(a)
    return out


def _split_new(n: int, fraction: float, seed: int, iteration: int) -> np.ndarray:
    """Boolean mask: which of ``n`` new labels go to validation (reproducible)."""
    n_val = round(fraction * n)
    mask = np.zeros(n, dtype=bool)
    if n_val:
        mask[np.random.default_rng([seed, iteration, 17]).permutation(n)[:n_val]] = True
    return mask


# ---------------------------------------------------------------------------- the loop
class ActiveLearner:
    """Run (or resume) the active-learning loop of an :class:`ActiveLearningConfig`.

    Example::

        learner = ActiveLearner(config)         # a config object, dict or YAML path
        log = learner.run()                      # xarray.Dataset over iterations
    """

    def __init__(
        self,
        config: ActiveLearningConfig | dict | str | os.PathLike,
        base_dir: str | os.PathLike | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        show_progress: bool = True,
        labeler: Any = None,
    ):
        """``labeler`` (a :class:`~nnp_lab.data.labelers.Labeler`) replaces the one the
        config describes — for references not expressible in a config file."""
        from nnp_lab.config_io import load_config, validate

        if isinstance(config, (str, os.PathLike)):
            base = Path(config).resolve().parent if base_dir is None else Path(base_dir)
            config = load_config(ActiveLearningConfig, config)
        else:
            base = Path(base_dir or ".")
            config = validate(ActiveLearningConfig, config, source="active-learning config")
        self.config = config
        self.base = base
        wd = Path(config.workdir)
        self.workdir = wd if wd.is_absolute() else base / wd
        self.labeler = labeler if labeler is not None else make_labeler(config.labeler)
        self.progress = progress
        self.show_progress = show_progress
        self._oracle: DaskOracle | None = None

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.workdir / "state.json"

    def iter_dir(self, k: int) -> Path:
        return self.workdir / f"iter_{k:03d}"

    def state(self) -> dict[str, Any]:
        """``{"iteration": k, "stage": last completed stage}`` (``stage`` None: fresh)."""
        if not self.state_path.exists():
            return {"iteration": 0, "stage": None}
        st = json.loads(self.state_path.read_text())
        same = st.get("config") == self.config.fingerprint()
        steered = st.get("core") is not None and st["core"] == self.config.core_fingerprint()
        if not (same or steered):
            raise ConfigError(
                f"{self.workdir} holds a run made with a different config (only explore, "
                "select, starts, stop criteria, workdir and oracle may change on resume); "
                "use a new workdir"
            )
        return st

    def _set_state(self, iteration: int, stage: str) -> None:
        atomic_write_text(
            self.state_path,
            json.dumps(
                {
                    "version": STATE_VERSION,
                    "iteration": iteration,
                    "stage": stage,
                    "config": self.config.fingerprint(),
                    "core": self.config.core_fingerprint(),
                }
            ),
        )

    def _emit(self, event: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(event)

    @property
    def oracle(self) -> DaskOracle:
        if self._oracle is None:
            self._oracle = DaskOracle(
                self.labeler, cache=self.workdir / self.config.cache, config=self.config.oracle
            ).start()
        return self._oracle

    def close(self) -> None:
        if self._oracle is not None:
            self._oracle.close()
            self._oracle = None

    # ------------------------------------------------------------------ artefacts
    def committee(self, k: int) -> Committee:
        return Committee.load(self.iter_dir(k) / "committee.pt")

    def calibration(self, k: int) -> Calibration:
        path = self.iter_dir(k) / "calibration.json"
        return Calibration.load(path) if path.exists() else Calibration()

    def datasets(self, k: int) -> tuple[Dataset, Dataset]:
        d = self.iter_dir(k)
        return Dataset.load(d / "train.nc"), Dataset.load(d / "val.nc")

    def test_set(self) -> Dataset | None:
        path = self.workdir / "test.nc"
        return Dataset.load(path) if path.exists() else None

    def log(self) -> xr.Dataset | None:
        path = self.workdir / "al_log.nc"
        if not path.exists():
            return None
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()

    # ------------------------------------------------------------------ stages
    def _label(self, structures: list[Atoms], what: str) -> Dataset:
        """Label through the oracle; frames that MD with this very reference produced
        already carry its results and are kept as they are (not paid twice)."""
        method = self.labeler.method
        ready = [
            a.calc is not None
            and "energy" in getattr(a.calc, "results", {})
            and a.info.get("method") == method
            for a in structures
        ]
        todo = [a for a, r in zip(structures, ready) if not r]
        self._emit({"stage": "label", "what": what, "total": len(todo)})
        done = iter(
            self.oracle.label_structures(
                todo,
                progress=lambda d, t: self._emit({"stage": "label", "done": d, "total": t}),
                show_progress=self.show_progress,
            )
            if todo
            else []
        )
        out = [a if r else next(done) for a, r in zip(structures, ready)]
        return Dataset.from_atoms(out, validate=False)

    def _initial(self) -> None:
        cfg = self.config
        d0 = self.iter_dir(0)
        t0 = time.perf_counter()
        structures = _geometries(cfg.initial, self.labeler, cfg.seed, self.base)
        data = self._label(structures, "initial data")
        labelled = data.labelled()
        if len(labelled) < 2:
            raise InputError(
                f"the initial data has {len(labelled)} labelled structures; at least 2 are "
                "needed (add sources or check the labeler)"
            )
        mask = _split_new(len(data), cfg.validation_fraction, cfg.seed, 0)
        if mask.all() or not mask.any():
            mask = np.zeros(len(data), dtype=bool)
            mask[-1] = cfg.validation_fraction > 0
        train, val = data.subset(np.flatnonzero(~mask)), data.subset(np.flatnonzero(mask))
        if cfg.test and not (self.workdir / "test.nc").exists():
            test_geo = _geometries(cfg.test, self.labeler, cfg.seed + 424242, self.base)
            self._label(test_geo, "test set").save(self.workdir / "test.nc")
        d0.mkdir(parents=True, exist_ok=True)
        train.save(d0 / "train.nc")
        val.save(d0 / "val.nc")
        atomic_write_text(d0 / "stage_times.json", json.dumps({"label": time.perf_counter() - t0}))
        self._set_state(0, "label")

    def _train(self, k: int) -> None:
        cfg = self.config
        d = self.iter_dir(k)
        t0 = time.perf_counter()
        train, val = self.datasets(k)
        warm = self.committee(k - 1) if k > 0 else None
        model = cfg.model.build(train.labelled().species)
        if warm is not None:
            model = warm.config
        self._emit({"stage": "train", "iteration": k})
        committee, _ = train_committee(
            train,
            val if len(val.labelled()) else None,
            model,
            cfg.committee,
            cfg.training if warm is None else cfg.retrain_config(),
            workdir=d / "members",
            warm_start=warm,
            progress=lambda r: self._emit({"stage": "train", "iteration": k, **r}),
            show_progress=self.show_progress,
        )
        committee.save(d / "committee.pt")
        cal = Calibration()
        if cfg.calibrate and len(val.labelled()) >= 3:
            cal = calibrate(committee, val)
        cal.save(d / "calibration.json")
        times = self._times(k)
        times["train"] = time.perf_counter() - t0
        atomic_write_text(d / "stage_times.json", json.dumps(times))
        self._record(k, committee, cal)
        self._set_state(k, "train")

    def _times(self, k: int) -> dict[str, float]:
        path = self.iter_dir(k) / "stage_times.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _explore(self, k: int) -> None:
        cfg = self.config
        d = self.iter_dir(k)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        committee, cal = self.committee(k - 1), self.calibration(k - 1)
        starts = [a for spec in cfg.starts for a in spec.build(self.base)]
        self._emit({"stage": "explore", "iteration": k})
        result = explore(
            committee,
            starts,
            cfg.explore,
            force_scale=cal.force_scale,
            seed=int(np.random.default_rng([cfg.seed, k]).integers(2**31)),
            progress=lambda dn, tot: self._emit(
                {"stage": "explore", "iteration": k, "done": dn, "total": tot}
            ),
            show_progress=self.show_progress,
        )
        stats = {
            "frames_judged": result.frames_judged,
            "steps": result.steps,
            "restarts": result.restarts,
            "trajectories": result.trajectories,
            "stopped_trajectories": result.stopped_trajectories,
            "uncertainties": result.uncertainties,
            "candidates": len(result.candidates),
        }
        atomic_write_text(d / "exploration.json", json.dumps(stats))
        atomic_write_text(
            d / "explore_config.json",
            cfg.model_dump_json(include={"explore", "starts"}),
        )
        if result.candidates:
            Dataset.from_atoms(result.candidates, validate=False).save(d / "candidates.nc")
        elif (d / "candidates.nc").exists():
            (d / "candidates.nc").unlink()
        atomic_write_text(d / "stage_times.json", json.dumps({"explore": time.perf_counter() - t0}))
        self._set_state(k, "explore")

    def _candidates(self, k: int) -> Dataset | None:
        path = self.iter_dir(k) / "candidates.nc"
        return Dataset.load(path) if path.exists() else None

    def _select(self, k: int) -> None:
        cfg = self.config
        d = self.iter_dir(k)
        t0 = time.perf_counter()
        cands = self._candidates(k)
        chosen: list[int] = []
        if cands is not None and len(cands):
            u = np.asarray(cands.xr["info_uncertainty"].values, dtype=float)
            hot = np.asarray(cands.xr["info_hot_atom"].values, dtype=int)
            fp = fingerprints(self.committee(k - 1), cands.to_atoms(), hot_atoms=hot)
            chosen = select_candidates(
                u, fp, cfg.select.budget, cfg.explore.threshold, cfg.select.prefilter
            )
        atomic_write_text(d / "selected.json", json.dumps({"selected": chosen}))
        times = self._times(k)
        times["select"] = time.perf_counter() - t0
        atomic_write_text(d / "stage_times.json", json.dumps(times))
        self._set_state(k, "select")

    def _label_selected(self, k: int) -> None:
        cfg = self.config
        d = self.iter_dir(k)
        t0 = time.perf_counter()
        chosen = json.loads((d / "selected.json").read_text())["selected"]
        train, val = self.datasets(k - 1)
        if chosen:
            cands = self._candidates(k)
            assert cands is not None
            picked = [cands.atoms(int(c)) for c in chosen]
            for a in picked:
                a.calc = None
                a.info = {
                    "source": a.info.get("source", ""),
                    "al_iteration": k,
                    "uncertainty": a.info.get("uncertainty", float("nan")),
                }
            new = self._label(picked, f"iteration {k}")
            new.save(d / "labelled.nc")
            mask = _split_new(len(new), cfg.validation_fraction, cfg.seed, k)
            if mask.any():
                val = Dataset.concat([val, new.subset(np.flatnonzero(mask))])
            if (~mask).any():
                train = Dataset.concat([train, new.subset(np.flatnonzero(~mask))])
        train.save(d / "train.nc")
        val.save(d / "val.nc")
        times = self._times(k)
        times["label"] = time.perf_counter() - t0
        atomic_write_text(d / "stage_times.json", json.dumps(times))
        self._set_state(k, "label")

    # ------------------------------------------------------------------ record
    def _record(self, k: int, committee: Committee, cal: Calibration) -> None:
        train, val = self.datasets(k)
        test = self.test_set()
        times = self._times(k)
        expl_path = self.iter_dir(k) / "exploration.json"
        expl = json.loads(expl_path.read_text()) if expl_path.exists() else {}
        n_selected = 0
        sel_path = self.iter_dir(k) / "selected.json"
        if sel_path.exists():
            n_selected = len(json.loads(sel_path.read_text())["selected"])
        all_data = Dataset.concat([train, val])
        rec = IterationRecord(
            iteration=k,
            n_train=len(train.labelled()),
            n_val=len(val.labelled()),
            n_labels=len(all_data),
            n_failed=int((all_data.status == "failed").sum()),
            val=_committee_metrics(committee, val),
            test=_committee_metrics(committee, test),
            frames_judged=int(expl.get("frames_judged", 0)),
            candidates=int(expl.get("candidates", 0)),
            selected=n_selected,
            restarts=int(expl.get("restarts", 0)),
            uncertainties=list(expl.get("uncertainties", [])),
            force_scale=cal.force_scale,
            spearman=cal.spearman_max,
            stage_seconds={s: float(times.get(s, np.nan)) for s in STAGES},
        )
        previous = self.log()
        log = write_log(
            self.workdir / "al_log.nc",
            previous,
            rec,
            threshold=self.config.explore.threshold,
            hard_limit=self.config.explore.hard_limit,
            method=self.labeler.method,
        )
        self._emit({"stage": "record", "iteration": k, "log": log})

    # ------------------------------------------------------------------ driver
    def _should_stop(self, k: int) -> str | None:
        cfg, st = self.config, self.config.stop
        log = self.log()
        if log is None:
            return None
        row = log.sel(iteration=k)
        if k >= st.max_iterations:
            return f"reached max_iterations ({st.max_iterations})"
        if st.max_labels is not None and int(row["n_labels"]) >= st.max_labels:
            return f"reached max_labels ({st.max_labels})"
        if st.target_force_rmse is not None:
            key = "test_force_rmse" if self.test_set() is not None else "val_force_rmse"
            value = float(row[key])
            if np.isfinite(value) and value <= st.target_force_rmse:
                return f"{key} {value:.1f} meV/Å ≤ target {st.target_force_rmse}"
        if k > 0 and int(row["candidates"]) < st.min_candidates:
            return (
                f"exploration found {int(row['candidates'])} frames above the threshold "
                f"({cfg.explore.threshold} eV/Å; fewer than min_candidates={st.min_candidates})"
            )
        return None

    def run(self) -> xr.Dataset:
        """Run until a stop criterion holds; resumes from ``state.json`` if present."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.workdir / "config.json", self.config.model_dump_json(indent=2))
        try:
            st = self.state()
            k, stage = int(st["iteration"]), st["stage"]
            if stage is None:
                self._initial()
                stage = "label"
            while True:
                if stage == "label":
                    self._train(k)
                    stage = "train"
                if stage == "train":
                    why = self._should_stop(k)
                    if why is not None:
                        self._emit({"stage": "done", "iteration": k, "reason": why})
                        break
                    k += 1
                    self._explore(k)
                    stage = "explore"
                if stage == "explore":
                    self._select(k)
                    stage = "select"
                if stage == "select":
                    self._label_selected(k)
                    stage = "label"
        finally:
            self.close()
        log = self.log()
        assert log is not None
        return log


def run_active_learning(
    config: ActiveLearningConfig | dict | str | os.PathLike,
    base_dir: str | os.PathLike | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
) -> xr.Dataset:
    """Run (or resume) the loop; returns the record of all iterations (``al_log.nc``)."""
    return ActiveLearner(config, base_dir, progress=progress, show_progress=show_progress).run()
