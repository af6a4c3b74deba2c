"""Command line: ``nnp-lab dataset build``, ``train``, ``eval``, ``active-learn``, ``demo``."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from nnp_lab.errors import NNPLabError

app = typer.Typer(
    help="nnp-lab: build datasets from reference calculations, train neural-network potentials, evaluate them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dataset_app = typer.Typer(help="Build and inspect datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print nnp-lab errors as one clear message (exit code 2) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NNPLabError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@dataset_app.command("build")
@_friendly
def dataset_build(
    config: Path = typer.Argument(..., help="YAML/JSON dataset build config"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="output netCDF (default: the config's `output`)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Generate structures, label them with the reference (cached), write netCDF."""
    from nnp_lab.config_io import load_config
    from nnp_lab.data.build import DatasetBuildConfig, build_dataset, summarize_sources

    cfg = load_config(DatasetBuildConfig, config)
    base = config.resolve().parent
    ds = build_dataset(cfg, base_dir=base, show_progress=not quiet)
    target = out or (base / cfg.output)
    ds.save(target)
    _print_json({"output": str(target), **ds.summary(), "sources": summarize_sources(ds)})


@dataset_app.command("info")
@_friendly
def dataset_info(
    path: Path = typer.Argument(..., help="dataset file (netCDF, ANI HDF5 or ase-readable)"),
) -> None:
    """Print a summary of a dataset."""
    from nnp_lab.data.dataset import Dataset

    _print_json(Dataset.read(path).summary())


@app.command("train")
@_friendly
def train(
    data: Path = typer.Argument(
        ..., help="dataset: netCDF, ANI HDF5, or any ase-readable file with energies/forces"
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="output directory (model.pt, checkpoint.pt, metrics.nc, ...)"
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML/JSON with model/training/split sections"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    epochs: int | None = typer.Option(None, help="override training.epochs"),
    device: str | None = typer.Option(None, help="override training.device (auto, cpu, cuda:0)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Train a potential (species inferred from the data) and report test errors."""
    from nnp_lab.config_io import read_mapping, validate
    from nnp_lab.data.dataset import Dataset
    from nnp_lab.training.run import TrainRunConfig, train_from_dataset

    raw = read_mapping(config) if config else {}
    training = dict(raw.get("training") or {})
    if epochs is not None:
        training["epochs"] = epochs
    if device is not None:
        training["device"] = device
    if training:
        raw["training"] = training
    cfg = validate(TrainRunConfig, raw, source=str(config) if config else "training options")
    ds = Dataset.read(data)
    summary = train_from_dataset(ds, cfg, out, resume=resume, show_progress=not quiet)
    _print_json(summary)


@app.command("eval")
@_friendly
def evaluate_cmd(
    model: Path = typer.Argument(..., help="model file written by training (model.pt)"),
    data: Path = typer.Argument(..., help="dataset to evaluate on"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write parity data (netCDF)"),
    plot: Path | None = typer.Option(None, "--plot", help="write a parity plot (PNG)"),
) -> None:
    """Evaluate a model: MAE/RMSE of energy (meV/atom), forces (meV/Å), stress."""
    from nnp_lab._atomic import atomic_write
    from nnp_lab.data.dataset import Dataset
    from nnp_lab.models.serialization import load
    from nnp_lab.training.evaluation import evaluate, metrics

    pot = load(model)
    parity = evaluate(pot, Dataset.read(data))
    if out:
        atomic_write(out, lambda tmp: parity.to_netcdf(tmp, engine="h5netcdf"))
    if plot:
        from nnp_lab.demo import plot_parity

        plot_parity(parity, plot)
    _print_json({"n_structures": parity.attrs["n_structures"], **metrics(parity)})


@app.command("active-learn")
@_friendly
def active_learn(
    config: Path = typer.Argument(..., help="YAML/JSON active-learning config"),
    workdir: Path | None = typer.Option(
        None, "--workdir", "-w", help="run folder (default: the config's `workdir`)"
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", "-n", help="override stop.max_iterations"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Committee active learning: explore, ask the reference, retrain (resumes if killed)."""
    from nnp_lab.active.loop import ActiveLearner, ActiveLearningConfig
    from nnp_lab.config_io import load_config

    cfg = load_config(ActiveLearningConfig, config)
    update: dict[str, Any] = {}
    if workdir is not None:
        update["workdir"] = str(workdir.resolve())
    if iterations is not None:
        update["stop"] = cfg.stop.model_copy(update={"max_iterations": iterations})
    if update:
        cfg = cfg.model_copy(update=update)

    def report(event: dict[str, Any]) -> None:
        if event.get("stage") == "done":
            typer.echo(f"stopped after iteration {event['iteration']}: {event['reason']}")

    learner = ActiveLearner(
        cfg, base_dir=config.resolve().parent, progress=report, show_progress=not quiet
    )
    log = learner.run()
    last = log.isel(iteration=-1)
    summary = {
        "workdir": str(learner.workdir),
        "iterations": int(log.sizes["iteration"]),
        "labels": int(last["n_labels"]),
        "failed_labels": int(last["n_failed"]),
        "val_force_rmse_meV_per_A": float(last["val_force_rmse"]),
        "test_force_rmse_meV_per_A": float(last["test_force_rmse"]),
        "spearman_rho": float(last["spearman_rho"]),
        "record": str(learner.workdir / "al_log.nc"),
    }
    _print_json(summary)


@app.command("grow")
@_friendly
def grow(
    config: Path = typer.Argument(..., help="YAML/JSON growth config (GrowthConfig)"),
    out: Path = typer.Option(Path("growth"), "--out", "-o", help="output folder"),
) -> None:
    """Kinetic Monte Carlo crystal growth with barriers from the NNP barrier model."""
    from nnp_lab.apps.crystal_growth.growth import GrowthConfig, run_growth, save_outputs
    from nnp_lab.config_io import load_config

    result = run_growth(load_config(GrowthConfig, config))
    nc, traj = save_outputs(result, out)
    last = result.isel(snapshot=-1)
    _print_json(
        {
            "result": str(nc),
            "trajectory": str(traj),
            "coverage_ML": float(last.coverage),
            "island_density_per_site": float(last.island_density),
            "roughness_layers": float(last.roughness),
            "events": int(last.events),
            "simulated_time_s": float(last.time),
            "wall_time_s": float(result.attrs["wall_time_s"]),
        }
    )


@app.command("dashboard")
@_friendly
def dashboard_cmd(
    path: Path = typer.Argument(
        ..., help="training folder, metrics.nc, or active-learning workdir"
    ),
    port: int = typer.Option(5006, "--port", "-p", help="port on 127.0.0.1"),
) -> None:
    """Serve the Panel dashboard of a training or active-learning run on 127.0.0.1."""
    from nnp_lab.dashboards.app import serve

    typer.echo(f"nnp-lab dashboard of {path}: http://127.0.0.1:{port}/")
    serve(path, port=port)


@app.command("demo")
@_friendly
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="output directory"),
    quick: bool = typer.Option(False, "--quick", help="tiny dataset and few epochs (smoke test)"),
) -> None:
    """Cu with EMT: build data, train, test MAE, 1 ps NVE drift, parity plot."""
    from nnp_lab.demo import run_demo

    summary = run_demo(out, quick=quick)
    typer.echo("")
    typer.echo(
        f"test energy MAE : {summary['test_energy_mae_meV_per_atom']:.2f} meV/atom (target < 5)"
    )
    typer.echo(f"test force MAE  : {summary['test_force_mae_meV_per_A']:.1f} meV/Å (target < 100)")
    typer.echo(
        f"NVE energy drift: {summary['nve_drift_meV_per_atom_per_ps']:.3f} meV/atom/ps (target < 1)"
    )
    typer.echo(f"outputs in {out}/ (summary.json, parity.png, model.pt, dataset.nc, metrics.nc)")
    if not quick and not all(summary["targets_met"].values()):
        typer.secho(f"targets missed: {summary['targets_met']}", fg=typer.colors.YELLOW, err=True)
        sys.exit(1)


if __name__ == "__main__":
    app()
