"""Barrier sources for the growth KMC, side by side on held-out Cu(100) environments:
the committee barrier model against NEB run on the fly with the full nnp-lab potential
(the shipped Cu committee), both scored against EMT NEB, with the time per barrier.

    python -m benchmarks.barrier_sources            # 12 held-out environments
    python -m benchmarks.barrier_sources --n 19     # all of them

The split is the one of tests/test_crystal_growth_barriers.py (80 % train, seed 0).
EMT NEB times are those recorded when the shipped data were made. Prints a table and
writes ``benchmarks/results/barrier-sources-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> None:
    from nnp_lab.apps.crystal_growth.barrier_data import load_barriers
    from nnp_lab.apps.crystal_growth.barrier_model import BarrierModel
    from nnp_lab.apps.crystal_growth.deposition_potential import SHIPPED
    from nnp_lab.apps.crystal_growth.lattice import Surface
    from nnp_lab.apps.crystal_growth.neb import neb_barrier
    from nnp_lab.dynamics.calculator import CommitteeCalculator
    from nnp_lab.models.committee import Committee

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="held-out environments to compare")
    args = ap.parse_args(argv)
    surface = Surface("Cu", "100")
    data = load_barriers("Cu", "100")
    data = data.where(data.status == "ok", drop=True)
    keys = data.key.values.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(keys))
    n_train = int(0.8 * len(keys))
    tr, te = perm[:n_train], perm[n_train:][: args.n]
    emt = data.barrier.values[te]

    t0 = time.perf_counter()
    model = BarrierModel(surface, members=5, seed=0).fit(
        keys[tr], data.barrier.values[tr], data.delta_e.values[tr]
    )
    fit_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:  # a loaded model: no descriptors cached
        fresh = BarrierModel.load(model.save(Path(tmp) / "model.pt"))
    t0 = time.perf_counter()
    pred = fresh.predict(keys[te])  # descriptors of unseen keys included
    model_s = (time.perf_counter() - t0) / len(te)

    committee = Committee.load(SHIPPED)
    nnp, spread, nnp_s, status = [], [], [], []
    for k in keys[te]:
        r = neb_barrier(surface, int(k), lambda: CommitteeCalculator(committee))
        nnp.append(r.barrier)
        spread.append(r.spread)
        nnp_s.append(r.wall_time)
        status.append(r.status)
        print(
            f"  key {int(k)} ({r.kind}): EMT NEB {emt[len(nnp) - 1]:.3f}  NNP NEB "
            f"{r.barrier:.3f} ± {r.spread:.3f} ({r.status}, {r.wall_time:.1f} s)",
            flush=True,
        )
    nnp, ok = np.array(nnp), np.array(status) == "ok"
    rows = [
        ("EMT NEB (reference)", 0.0, float(np.mean(data.wall_time.values[te])), len(te)),
        (
            "NEB on the nnp-lab committee",
            float(np.abs(nnp[ok] - emt[ok]).mean()),
            float(np.mean(nnp_s)),
            int(ok.sum()),
        ),
        ("barrier model", float(np.abs(pred["barrier"] - emt).mean()), model_s, len(te)),
    ]
    print(
        f"\nCu(100), {len(te)} held-out environments (model fitted on {n_train} in {fit_s:.0f} s)"
    )
    print(f"{'source':32s} {'MAE vs EMT NEB (eV)':>20s} {'s / barrier':>12s} {'n':>4s}")
    for name, mae, sec, n in rows:
        print(f"{name:32s} {mae:20.3f} {sec:12.4g} {n:4d}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"barrier-sources-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "keys": [int(k) for k in keys[te]],
                "emt_neb": emt.tolist(),
                "nnp_neb": nnp.tolist(),
                "nnp_spread": spread,
                "nnp_status": status,
                "model": pred["barrier"].tolist(),
                "model_std": pred["barrier_std"].tolist(),
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
