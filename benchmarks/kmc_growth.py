"""Speed of the growth KMC: events per second on a 200 × 200 surface.

    python -m benchmarks.kmc_growth            # (100) and (111), bond-counting barriers
    python -m benchmarks.kmc_growth --model    # also with the committee barrier model

Each case deposits submonolayer Cu at 300 K (reversible attachment: edge diffusion and
detachment happen) and reports events/s of the compiled loop with the time spent in the
barrier source (new environments) shown apart. The same algorithm run as plain Python
(``NUMBA_DISABLE_JIT=1``, in a subprocess, for a fixed number of events) is the baseline
in the same run: no KMC package with this lattice and rate catalogue installs from PyPI
here (kmcos and KMCLib need their own Fortran/C++ builds). Prints a table and writes
``benchmarks/results/kmc-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def case(facet: str, source: str, size: int, events: int, seed: int = 0) -> dict:
    from ase.units import kB

    from nnp_lab.apps.crystal_growth.bond_counting import BondCountingBarriers
    from nnp_lab.apps.crystal_growth.kmc import GrowthKMC
    from nnp_lab.apps.crystal_growth.lattice import Surface

    s = Surface("Cu", facet)
    if source == "model":
        from nnp_lab.apps.crystal_growth.growth import GrowthConfig, barrier_source

        barriers = barrier_source(GrowthConfig(facet=facet, members=5), s)
    else:
        barriers = BondCountingBarriers(e_d=0.45, e_n=0.25, e_es=0.1, e_x=0.9)
    d = 1e12 * math.exp(-0.45 / (kB * 300.0))
    kmc = GrowthKMC(s, barriers, size=size, layers=6, temperature=300.0, flux=d / 1e6, seed=seed)
    kmc.advance(max_events=1000)  # compile + first environments
    t_model0 = kmc.model_time
    t0 = time.perf_counter()
    done = kmc.advance(max_events=events)
    wall = time.perf_counter() - t0
    model = kmc.model_time - t_model0
    return {
        "facet": facet,
        "source": source,
        "size": size,
        "events": done,
        "wall_s": wall,
        "barrier_source_s": model,
        "events_per_s": done / wall,
        "events_per_s_loop": done / max(wall - model, 1e-9),
        "coverage": kmc.coverage,
        "catalogue": len(kmc.barrier_of),
    }


def python_baseline(facet: str, size: int, events: int) -> dict:
    code = (
        "import json,sys; from benchmarks.kmc_growth import case; "
        f"print(json.dumps(case({facet!r}, 'bond', {size}, {events})))"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--python-events", type=int, default=5_000)
    ap.add_argument("--model", action="store_true", help="also the committee barrier model")
    args = ap.parse_args()
    rows = []
    for facet in ("100", "111"):
        rows.append(case(facet, "bond", args.size, args.events))
        if args.model:
            from nnp_lab.errors import InputError

            try:
                rows.append(case(facet, "model", args.size, args.events))
            except InputError as err:  # no shipped NEB data for this facet
                print(f"({facet}) model skipped: {err}")
        py = python_baseline(facet, args.size, args.python_events)
        py["source"] = "bond (plain Python)"
        rows.append(py)
    print(
        f"{'facet':6}{'barriers':22}{'events':>10}{'events/s':>12}{'loop only':>12}"
        f"{'catalogue':>10}"
    )
    for r in rows:
        print(
            f"{r['facet']:6}{r['source']:22}{r['events']:>10}{r['events_per_s']:>12.3g}"
            f"{r['events_per_s_loop']:>12.3g}{r['catalogue']:>10}"
        )
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"kmc-{stamp}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
