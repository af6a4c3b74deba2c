"""Label efficiency: committee selection against random selection from one candidate pool.

Both strategies start from the same labelled seed set and the same committee, draw
``budget`` structures per round from the same pool (reference labels are paid only for
what a strategy picks; both go through the same oracle and cache), retrain the committee
the same way (warm start), and are scored on the same independent test set. The active
strategy ranks the remaining pool by the committee's maximum force spread and picks a
diverse batch among the most uncertain (farthest points in descriptor space, see
:mod:`nnp_lab.active.select`); the random strategy picks uniformly.

The result is an ``xarray.Dataset`` over ``(strategy, round)`` with the labels used and the
test errors; ``attrs["labels_ratio"]`` is the number of labels the active strategy needed to
reach the random strategy's final force RMSE divided by the labels random used for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms

from nnp_lab.active.members import CommitteeConfig, train_committee
from nnp_lab.active.oracle import DaskOracle
from nnp_lab.active.select import fingerprints, select_candidates
from nnp_lab.active.uncertainty import calibrate, committee_predictions
from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import InputError
from nnp_lab.models.committee import Committee
from nnp_lab.models.potential import ModelConfig
from nnp_lab.training.config import TrainConfig

STRATEGIES = ("active", "random")


def test_errors(committee: Committee, test: Dataset) -> dict[str, float]:
    """Committee-mean errors on ``test``: force RMSE/MAE (meV/Å), energy MAE (meV/atom)."""
    test = test.labelled()
    pred = committee_predictions(committee, test)
    ref = np.asarray(test.xr["forces"].values)
    df = pred["forces_mean"].values - ref
    de = (pred["energy_mean"].values - test.energy) / test.n_atoms
    return {
        "force_rmse": 1000 * float(np.sqrt(np.mean(df**2))),
        "force_mae": 1000 * float(np.mean(np.abs(df))),
        "energy_mae": 1000 * float(np.mean(np.abs(de))),
    }


def choose(
    strategy: str,
    committee: Committee,
    pool: Sequence[Atoms],
    remaining: np.ndarray,
    budget: int,
    seed: int,
    round_: int,
) -> list[int]:
    """Pool indices a strategy labels next (``remaining``: indices still unlabelled)."""
    if strategy == "random":
        rng = np.random.default_rng([seed, round_, 7])
        return sorted(int(x) for x in rng.choice(remaining, size=budget, replace=False))
    if strategy != "active":
        raise InputError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    candidates = Dataset.from_atoms([pool[k] for k in remaining], validate=False)
    pred = committee_predictions(committee, candidates)
    u = pred["max_force_spread"].values
    spread = pred["force_spread"].values
    ptr = candidates.ptr
    hot = [int(np.argmax(spread[ptr[k] : ptr[k + 1]])) for k in range(len(candidates))]
    fp = fingerprints(committee, [pool[k] for k in remaining], hot_atoms=hot)
    picked = select_candidates(u, fp, budget, threshold=0.0, prefilter=4 * budget)
    return sorted(int(remaining[k]) for k in picked)


def label_efficiency(
    pool: Sequence[Atoms],
    seed_set: Dataset,
    validation: Dataset,
    test: Dataset,
    oracle: DaskOracle,
    model: ModelConfig,
    committee: CommitteeConfig,
    training: TrainConfig,
    retraining: TrainConfig,
    budget: int,
    rounds: int,
    workdir: str | os.PathLike,
    strategies: Sequence[str] = STRATEGIES,
    seed: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = False,
) -> xr.Dataset:
    """Run every strategy for ``rounds`` rounds of ``budget`` labels; see the module doc.

    Checkpoints live in ``workdir/<strategy>/round_<r>/``, so an interrupted study
    resumes (training resumes; labels come from the oracle's cache).
    """
    pool = list(pool)
    if budget * rounds > len(pool):
        raise InputError(
            f"{rounds} rounds of {budget} labels need {budget * rounds} pool structures; "
            f"the pool has {len(pool)}"
        )
    work = Path(workdir)
    base, _ = train_committee(
        seed_set,
        validation,
        model,
        committee,
        training,
        workdir=work / "round_0",
        show_progress=show_progress,
    )
    base_err = test_errors(base, test)
    n0 = len(seed_set.labelled())
    names = list(strategies)
    n_labels = np.zeros((len(names), rounds + 1), dtype=int)
    metrics = {
        k: np.full((len(names), rounds + 1), np.nan)
        for k in ("force_rmse", "force_mae", "energy_mae")
    }
    picks = np.full((len(names), rounds, budget), -1, dtype=int)
    spearman = np.full(len(names), np.nan)
    spearman_rms = np.full(len(names), np.nan)
    for s, strategy in enumerate(names):
        n_labels[s, 0] = n0
        for key, value in base_err.items():
            metrics[key][s, 0] = value
        current, train = base, seed_set
        taken: list[int] = []
        for r in range(1, rounds + 1):
            remaining = np.setdiff1d(np.arange(len(pool)), taken)
            chosen = choose(strategy, current, pool, remaining, budget, seed, r)
            taken += chosen
            picks[s, r - 1, : len(chosen)] = chosen
            fresh = []
            for k in chosen:
                a = pool[k].copy()
                a.calc = None
                a.info = {"source": pool[k].info.get("source", f"pool[{k}]"), "pool_index": k}
                fresh.append(a)
            new = Dataset.from_atoms(
                oracle.label_structures(fresh, show_progress=show_progress), validate=False
            )
            train = Dataset.concat([train, new])
            current, _ = train_committee(
                train,
                validation,
                current.config,
                committee,
                retraining,
                workdir=work / strategy / f"round_{r}",
                warm_start=current,
                show_progress=show_progress,
            )
            n_labels[s, r] = n0 + len(taken)
            err = test_errors(current, test)
            for key, value in err.items():
                metrics[key][s, r] = value
            if progress is not None:
                progress({"strategy": strategy, "round": r, "labels": int(n_labels[s, r]), **err})
        cal = calibrate(current, test)
        spearman[s], spearman_rms[s] = cal.spearman_max, cal.spearman_rms
    out = xr.Dataset(
        {
            "n_labels": (("strategy", "round"), n_labels),
            **{k: (("strategy", "round"), v) for k, v in metrics.items()},
            "picked": (("strategy", "selection_round", "pick"), picks),
            "test_spearman_rho": ("strategy", spearman),
            "test_spearman_rho_rms": ("strategy", spearman_rms),
        },
        coords={"strategy": names, "round": np.arange(rounds + 1)},
    )
    for k in ("force_rmse", "force_mae"):
        out[k].attrs["units"] = "meV/Å"
    out["energy_mae"].attrs["units"] = "meV/atom"
    out.attrs.update(
        budget=budget,
        rounds=rounds,
        pool_size=len(pool),
        seed_labels=n0,
        test_structures=len(test.labelled()),
        test_force_rms=1000 * float(np.sqrt(np.nanmean(test.labelled().xr["forces"].values ** 2))),
        method=oracle.labeler.method,
    )
    if "active" in names and "random" in names:
        out.attrs.update(labels_to_match(out))
    return out


def labels_to_match(result: xr.Dataset) -> dict[str, float]:
    """Labels the active strategy needed to reach random's final force RMSE (linear
    interpolation between rounds), and its ratio to random's label count."""
    act = result.sel(strategy="active")
    rnd = result.sel(strategy="random")
    target = float(rnd["force_rmse"].values[-1])
    labels = act["n_labels"].values.astype(float)
    rmse = act["force_rmse"].values
    needed = float("nan")
    for r in range(len(rmse)):
        if rmse[r] <= target:
            if r == 0:
                needed = labels[0]
            else:
                # interpolate on the segment where the curve crosses the target
                f = (rmse[r - 1] - target) / (rmse[r - 1] - rmse[r])
                needed = labels[r - 1] + f * (labels[r] - labels[r - 1])
            break
    seed = float(result.attrs.get("seed_labels", labels[0]))
    random_added = float(rnd["n_labels"].values[-1]) - seed
    return {
        "random_final_force_rmse": target,
        "active_labels_to_match": needed,
        "random_labels": float(rnd["n_labels"].values[-1]),
        # ratio of *selected* labels (the seed set is common to both)
        "labels_ratio": (needed - seed) / random_added if random_added > 0 else float("nan"),
    }


def plot_efficiency(result: xr.Dataset, path: str | os.PathLike, title: str = "") -> Path:
    """Force RMSE on the test set vs labels, one curve per strategy (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for s in result.strategy.values:
        row = result.sel(strategy=s)
        ax.plot(row["n_labels"], row["force_rmse"], "o-", label=str(s))
    ax.set_xlabel("reference labels")
    ax.set_ylabel("test force RMSE (meV/Å)")
    ax.set_yscale("log")
    ratio = result.attrs.get("labels_ratio")
    shown = ratio is not None and np.isfinite(ratio)
    ax.set_title(title + (f"  (active/random labels: {ratio:.2f})" if shown else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
