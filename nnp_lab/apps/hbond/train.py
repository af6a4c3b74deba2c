"""Train the H-bond interaction committee on the dimer scans and report held-out errors.

    python -m nnp_lab.apps.hbond.train --scans nnp_lab/resources/hbond --out model.pt

Points of every dimer are split (seeded, per dimer) into train / val / test; the report
(``model.json``) holds the mean absolute error on the test points per dimer and overall,
against the scans' own reference level, together with GFN2-xTB's error on the same points.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnp_lab.apps.hbond.dimer_data import cheap_points, load_scan
from nnp_lab.apps.hbond.dimers import get_dimer
from nnp_lab.apps.hbond.maps import equilibrium_of
from nnp_lab.apps.hbond.model import (
    ACTIVE_FAMILY,
    TRAIN_ONLY_FAMILIES,
    InteractionTrainConfig,
    held_out_split,
    interaction_energies,
    labelled,
    point_families,
    save_model,
    train_interaction_committee,
    training_points,
)
from nnp_lab.errors import InputError

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "hbond"


def scan_paths(folder: str | Path = RESOURCES) -> list[Path]:
    """The dimer scans (``<dimer>.nc`` for the dimers of ``DIMERS``) in ``folder``."""
    from nnp_lab.apps.hbond.dimers import DIMERS

    paths = [Path(folder) / f"{n}.nc" for n in DIMERS if (Path(folder) / f"{n}.nc").exists()]
    if not paths:
        raise InputError(f"no dimer scans (<dimer>.nc for {sorted(DIMERS)}) in {folder}")
    return paths


def error_table(
    names: np.ndarray, split: np.ndarray, ref: np.ndarray, pred: np.ndarray, xtb: np.ndarray
) -> dict[str, dict[str, float]]:
    """Test-point MAE (kcal/mol) of the model and of xTB, per dimer and ``all``."""
    out = {}
    test = split == "test"
    for name in [*sorted(set(names)), "all"]:
        sel = test & ((names == name) if name != "all" else True)
        x = sel & np.isfinite(xtb)
        out[name] = {
            "n_test": int(sel.sum()),
            "mae_model": float(np.mean(np.abs(pred[sel] - ref[sel]))),
            "mae_xtb": float(np.mean(np.abs(xtb[x] - ref[x]))) if x.any() else float("nan"),
        }
    return out


def train(
    scans: Sequence[str | Path],
    out: str | Path,
    config: dict[str, Any] | None = None,
    n_pretrain: int = 1500,
    pretrain_for: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Train on ``scans``, save the committee to ``out`` (+ ``.json`` report), return the report.

    ``n_pretrain`` random GFN2-xTB placements per dimer are fitted first; ``pretrain_for``
    overrides that count for named dimers (``{"formamide_dimer": 6000}``: the 12-atom
    dimers' 6D xTB surfaces need more points than the water dimer's).
    """
    datasets = [load_scan(p) for p in scans]
    pretrain_for = dict(pretrain_for or {})
    unknown = sorted(set(pretrain_for) - {str(ds.attrs["dimer"]) for ds in datasets})
    if unknown:
        raise InputError(
            f"pretrain_for names {unknown}, which are not among the scans' dimers; give "
            "counts only for dimers being trained"
        )
    if any(n < 1 for n in [n_pretrain, *pretrain_for.values()]):
        raise InputError("pretraining counts must be positive numbers of placements")
    dimers, e_int, names = training_points(datasets)
    xtb = np.concatenate([ds["e_int_xtb"].values[labelled(ds)] for ds in datasets])
    families = point_families(datasets)
    split = held_out_split(names, families=families)
    t0 = time.perf_counter()
    pre_dimers: list = []
    pre_e: list[np.ndarray] = []
    for ds in datasets:
        spec = get_dimer(str(ds.attrs["dimer"]))
        n = pretrain_for.get(spec.name, n_pretrain)
        d, e = cheap_points(spec, equilibrium_of(ds), n_random=n)
        pre_dimers += d
        pre_e.append(e)
    t_pre = time.perf_counter() - t0
    model, report = train_interaction_committee(
        dimers,
        e_int,
        split,
        config,
        pretrain=(pre_dimers, np.concatenate(pre_e)),
        groups=names,
    )
    pred = interaction_energies(model, dimers)["mean"]
    report.update(
        config=InteractionTrainConfig(**(config or {})).model_dump(),
        train_seconds=time.perf_counter() - t0,
        pretrain_points=len(pre_dimers),
        pretrain_label_seconds=t_pre,
        pretrain_rule=f"GFN2-xTB on the systematic scans + {n_pretrain} random points per dimer"
        + "".join(f"; {k}: {v}" for k, v in sorted(pretrain_for.items())),
        n_points=len(dimers),
        n_active=int((families == ACTIVE_FAMILY).sum()),
        reference_methods=sorted({ds.attrs["reference_method"] for ds in datasets}),
        test_mae_kcal_mol=error_table(names, split, e_int, pred, xtb),
        split_rule="held_out_split(names, families): 15 % test, 10 % val per dimer, seed 0; "
        f"{' and '.join(TRAIN_ONLY_FAMILIES)} family points always train",
    )
    save_model(model, out, report)
    return report


def _counts(items: Sequence[str]) -> dict[str, int]:
    """``["formamide_dimer=6000"]`` → ``{"formamide_dimer": 6000}``, with a clear error."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise InputError(
                f"--pretrain-for expects DIMER=N (e.g. formamide_dimer=6000), got {item!r}"
            )
        out[name.strip()] = int(value)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", default=str(RESOURCES), help="folder of <dimer>.nc scans")
    ap.add_argument("--out", required=True, help="committee file (.pt); report next to it")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--pretrain", type=int, default=1500, help="xTB random points per dimer")
    ap.add_argument(
        "--pretrain-for",
        action="append",
        default=[],
        metavar="DIMER=N",
        help="xTB random points for one dimer instead of --pretrain (repeatable), "
        "e.g. formamide_dimer=6000",
    )
    ap.add_argument("--batch-points", type=int, default=None, help="dimers per step")
    ap.add_argument("--hidden", type=int, nargs="+", default=None, help="layer widths")
    ap.add_argument(
        "--residual",
        type=int,
        nargs="+",
        default=None,
        help="widths of a correction network fitted to reference − frozen xTB-pretrained "
        "network (default: fine-tune the pretrained network)",
    )
    args = ap.parse_args(argv)
    report = train(
        scan_paths(args.scans),
        args.out,
        {
            "members": args.members,
            "epochs": args.epochs,
            **({"batch_points": args.batch_points} if args.batch_points else {}),
            **({"hidden": args.hidden} if args.hidden else {}),
            **({"residual_hidden": args.residual} if args.residual else {}),
        },
        n_pretrain=args.pretrain,
        pretrain_for=_counts(args.pretrain_for),
    )
    print(f"trained on {report['n_points']} points in {report['train_seconds']:.0f} s")
    print(f"{'dimer':20s} {'n_test':>6s} {'MAE model':>10s} {'MAE xTB':>9s}  (kcal/mol)")
    for name, row in report["test_mae_kcal_mol"].items():
        print(f"{name:20s} {row['n_test']:6d} {row['mae_model']:10.3f} {row['mae_xtb']:9.3f}")


if __name__ == "__main__":
    main()
