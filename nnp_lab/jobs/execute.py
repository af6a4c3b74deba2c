"""What each job kind does, given its validated spec, a root folder and a progress callback.

Paths in specs are relative to ``root``; :func:`safe_path` refuses absolute paths, ``..``
and symlinks that lead outside it. Every long-running library call gets the progress
callback, so the worker turns progress into events; an exception raised by the callback
stops the job (it is then shown as failed, never as running).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnp_lab._atomic import atomic_write_text
from nnp_lab.errors import InputError, PathError

Progress = Callable[[str, dict[str, Any]], None]


def safe_path(root: str | Path, relative: str) -> Path:
    """``root / relative`` resolved, refused unless it stays inside ``root``."""
    rel = Path(relative)
    if rel.is_absolute():
        raise PathError(f"path {relative!r} must be relative to the server root")
    if ".." in rel.parts:
        raise PathError(f"path {relative!r} may not contain '..'")
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise PathError(f"path {relative!r} leads outside the server root (symlink?)")
    return target


def check_paths(spec: Any, root: str | Path) -> None:
    """Every path a spec names must stay inside ``root``."""
    for p in spec.paths():
        safe_path(root, p)


def _train_config(config: Any, device: str) -> Any:
    return config.model_copy(update={"device": device}) if device != "auto" else config


def run_dataset_build(spec: Any, root: Path, progress: Progress, resume: bool) -> dict[str, Any]:
    from nnp_lab.config_io import load_config
    from nnp_lab.data.build import DatasetBuildConfig, build_dataset, summarize_sources

    recipe = spec.recipe
    base = root
    if isinstance(recipe, str):
        path = safe_path(root, recipe)
        recipe = load_config(DatasetBuildConfig, path)
        base = path.parent
    out = safe_path(root, spec.output) if spec.output else safe_path(base, recipe.output)
    ds = build_dataset(
        recipe,
        base_dir=base,
        progress=lambda d, t: progress("label", {"done": d, "total": t, "fraction": d / t}),
        show_progress=False,
    )
    ds.save(out)
    return {
        "dataset": str(out.relative_to(root)),
        "summary": ds.summary(),
        "sources": summarize_sources(ds),
    }


def run_train(spec: Any, root: Path, progress: Progress, resume: bool) -> dict[str, Any]:
    from nnp_lab.data.dataset import Dataset
    from nnp_lab.training.run import train_from_dataset

    data = Dataset.read(safe_path(root, spec.dataset))
    cfg = spec.config.model_copy(
        update={"training": _train_config(spec.config.training, spec.device)}
    )
    out = safe_path(root, spec.out)
    epochs = cfg.training.epochs

    def report(record: dict[str, Any]) -> None:
        progress("epoch", {**record, "fraction": record["epoch"] / epochs})

    summary = train_from_dataset(
        data, cfg, out, resume=resume, progress=report, show_progress=False
    )
    summary["model"] = str(Path(summary["model"]).resolve().relative_to(root))
    summary["metrics"] = str((out / "metrics.nc").relative_to(root))
    return summary


def run_committee_train(spec: Any, root: Path, progress: Progress, resume: bool) -> dict[str, Any]:
    from nnp_lab.active.members import train_committee
    from nnp_lab.active.uncertainty import calibrate
    from nnp_lab.data.dataset import Dataset

    data = Dataset.read(safe_path(root, spec.dataset)).labelled()
    if len(data) < 3:
        raise InputError(f"need at least 3 labelled structures, the dataset has {len(data)}")
    train, val, _test = data.split(spec.split.fractions, seed=spec.split.seed)
    out = safe_path(root, spec.out)
    training = _train_config(spec.training, spec.device)
    size, epochs = spec.committee.size, training.epochs

    def report(record: dict[str, Any]) -> None:
        done = record["member"] * epochs + record["epoch"]
        progress("epoch", {**record, "fraction": done / (size * epochs)})

    committee, _ = train_committee(
        train,
        val if len(val) else None,
        spec.model.build(data.species),
        spec.committee,
        training,
        workdir=out / "members",
        progress=report,
        show_progress=False,
    )
    committee.save(out / "committee.pt")
    result: dict[str, Any] = {"committee": str((out / "committee.pt").relative_to(root))}
    if len(val) >= 3:
        cal = calibrate(committee, val)
        cal.save(out / "calibration.json")
        result["calibration"] = json.loads((out / "calibration.json").read_text())
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2))
    return result


def run_active_learn(spec: Any, root: Path, progress: Progress, resume: bool) -> dict[str, Any]:
    from nnp_lab.active.loop import ActiveLearner, ActiveLearningConfig
    from nnp_lab.config_io import load_config

    config, base = spec.config, root
    if isinstance(config, str):
        path = safe_path(root, config)
        config, base = load_config(ActiveLearningConfig, path), path.parent
    workdir = (base / config.workdir).resolve()
    if workdir != root and root not in workdir.parents:
        raise PathError(f"workdir {config.workdir!r} leads outside the server root")
    if spec.device != "auto":
        config = config.model_copy(
            update={
                "training": _train_config(config.training, spec.device),
                "retraining": None
                if config.retraining is None
                else _train_config(config.retraining, spec.device),
            }
        )
    max_it = max(config.stop.max_iterations, 1)

    def report(event: dict[str, Any]) -> None:
        payload = {k: v for k, v in event.items() if k != "log"}
        if "iteration" in event:
            payload["fraction"] = min(1.0, event["iteration"] / max_it)
        progress(event.get("stage", "active"), payload)

    learner = ActiveLearner(config, base_dir=base, progress=report, show_progress=False)
    log = learner.run()
    last = log.isel(iteration=-1)
    return {
        "workdir": str(learner.workdir.resolve().relative_to(root)),
        "record": str((learner.workdir / "al_log.nc").resolve().relative_to(root)),
        "iterations": int(log.sizes["iteration"]),
        "labels": int(last["n_labels"]),
    }


def run_crystal_growth(spec: Any, root: Path, progress: Progress, resume: bool) -> dict[str, Any]:
    from nnp_lab.apps.crystal_growth.growth import GrowthConfig, run_growth, save_outputs
    from nnp_lab.config_io import load_config

    config = spec.config
    if isinstance(config, str):
        config = load_config(GrowthConfig, safe_path(root, config))
    out = safe_path(root, spec.out)
    result = run_growth(
        config, progress=lambda k, n: progress("growth", {"snapshot": k, "fraction": k / n})
    )
    nc, traj = save_outputs(result, out)
    last = result.isel(snapshot=-1)
    return {
        "result": str(nc.relative_to(root)),
        "trajectory": str(traj.relative_to(root)),
        "coverage": float(last.coverage),
        "island_density": float(last.island_density),
        "roughness": float(last.roughness),
        "events": int(last.events),
    }


def run_pimd_job(spec: Any, root: Path, progress: Progress, resume: bool) -> dict[str, Any]:
    from nnp_lab.config_io import load_config
    from nnp_lab.dynamics.pimd.run_config import PIMDRunConfig, run_from_config

    config = spec.config
    if isinstance(config, str):
        config = load_config(PIMDRunConfig, safe_path(root, config))
    for p in config.paths():
        safe_path(root, p)
    out = safe_path(root, spec.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = run_from_config(
        config,
        root,
        out / "pimd.nc",
        progress=lambda e: progress("pimd", {**e, "fraction": e["step"] / e["steps"]}),
        device=spec.device,
    )
    return {
        "result": str((out / "pimd.nc").relative_to(root)),
        "energy_virial_mean": float(ds["energy_virial"].mean()),
        "samples": int(ds.sizes["frame"]),
    }


RUNNERS = {
    "dataset_build": run_dataset_build,
    "train": run_train,
    "committee_train": run_committee_train,
    "active_learn": run_active_learn,
    "crystal_growth": run_crystal_growth,
    "pimd": run_pimd_job,
}


def execute(
    spec: Any, root: str | Path, progress: Progress, resume: bool = False
) -> dict[str, Any]:
    """Run ``spec`` in ``root``; returns its result (artefact paths relative to root)."""
    root = Path(root).resolve()
    check_paths(spec, root)
    return RUNNERS[spec.kind](spec, root, progress, resume)
