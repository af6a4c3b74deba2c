"""Ring-polymer step cost: all beads as one batch vs one call per bead, and vs i-PI.

    python -m benchmarks.pimd_beads                 # prints the table, writes results/*.json
    python -m benchmarks.pimd_beads --steps 50 --beads 8 32 64

Systems, both with the shipped water committee (4 members, H/O, 8 Å-free ANI-type
descriptor) in float32 on the CPU threads given by OMP_NUM_THREADS:

* molecular: a (H₂O)₈ cluster (24 atoms) in a 14 Å box — per-call overhead dominates;
* condensed: a 333-molecule water box (999 atoms) — the network dominates.

Columns: one single-structure energy+forces call (t₁); one nnp-lab PIMD step with P beads
(thermostat, normal modes, one batched model call); P separate single-structure calls (what
a per-bead driver pays); the same PIMD run driven by i-PI 3 (``InteractiveSimulation``, PILE-L,
the same committee through the in-process ``ffdirect`` driver in ``ipi_nnp_driver.py``), once
with one call per bead (i-PI's default) and once with i-PI's ``batch_size = P``. Median of
the timed steps after warm-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL = ROOT / "nnp_lab" / "resources" / "hbond" / "water_committee.pt"
DRIVER = ROOT / "benchmarks" / "ipi_nnp_driver.py"


def cluster() -> Any:
    from nnp_lab.apps.hbond.water_box import water_box

    box = water_box(8, density=1.0, seed=3)
    box.pbc = False
    box.center(vacuum=5.0)
    box.pbc = True
    return box


def condensed() -> Any:
    from nnp_lab.apps.hbond.water_box import water_box

    return water_box(333, density=1.0, seed=3)


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def nnp_lab_times(atoms: Any, beads: list[int], steps: int) -> dict[str, Any]:
    import torch

    from nnp_lab.dynamics.calculator import load_model
    from nnp_lab.dynamics.pimd import RingPolymer
    from nnp_lab.dynamics.pimd.beads import ModelBeads

    model = load_model(MODEL)
    single = ModelBeads(model, atoms, 1)
    q1 = torch.as_tensor(atoms.positions)[None]
    t1 = _median_time(lambda: single(q1), steps)
    rows = {}
    for p in beads:
        ring = RingPolymer(atoms, model, {"n_beads": p, "temperature_K": 300.0})
        ring.step(2)
        t_step = _median_time(lambda r=ring: r.step(1), steps)
        qs = ring.q.clone()
        t_sep = _median_time(
            lambda qs=qs, p=p: [single(qs[k : k + 1]) for k in range(p)], max(3, steps // 4)
        )
        rows[p] = {"step_s": t_step, "separate_calls_s": t_sep}
    return {"single_call_s": t1, "beads": rows}


def ipi_step_time(atoms: Any, p: int, steps: int, batch: bool) -> float:
    from ase import units
    from ase.io import write
    from ipi.scripting import InteractiveSimulation
    from ipi.scripting.templates import motion_nvt_xml, simulation_xml

    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.xyz"
        write(template, atoms)
        ff = f"""
<ffdirect name='nnp' pbc='false'>
<pes>custom</pes>
<pes_path>{DRIVER}</pes_path>
<batch_size>{p if batch else 1}</batch_size>
<parameters>{{template: {template}, model: {MODEL}}}</parameters>
</ffdirect>"""
        motion = motion_nvt_xml(
            timestep=0.25 * units.fs, thermostat="pile_l", path_integrals=True, tau=100 * units.fs
        )
        xml = simulation_xml(
            [atoms] * p,
            ff,
            motion,
            temperature=300.0,
            output="<output prefix='sim'></output>",
            prefix=str(Path(tmp) / "sim"),
        )
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            sim = InteractiveSimulation(xml)
            sim.run(2)
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                sim.run(1)
                times.append(time.perf_counter() - t0)
        finally:
            os.chdir(cwd)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beads", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-ipi", action="store_true", help="skip the i-PI runs")
    ap.add_argument("--condensed-beads", type=int, nargs="+", default=[8])
    ap.add_argument("--results", default=str(RESULTS), help="folder for the JSON report")
    args = ap.parse_args(argv)
    import torch

    report: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "model": MODEL.name,
    }
    mol = cluster()
    res = nnp_lab_times(mol, args.beads, args.steps)
    if not args.no_ipi:
        for p in args.beads:
            res["beads"][p]["ipi_step_s"] = ipi_step_time(mol, p, max(5, args.steps // 2), False)
            res["beads"][p]["ipi_batched_step_s"] = ipi_step_time(
                mol, p, max(5, args.steps // 2), True
            )
    report["molecular"] = {"atoms": len(mol), **res}
    big = condensed()
    report["condensed"] = {
        "atoms": len(big),
        **nnp_lab_times(big, args.condensed_beads, max(3, args.steps // 4)),
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"pimd-beads-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=1))
    for name in ("molecular", "condensed"):
        r = report[name]
        t1 = r["single_call_s"]
        print(f"\n{name}: {r['atoms']} atoms, one single-structure call t1 = {t1 * 1e3:.1f} ms")
        print(
            f"{'P':>4s} {'nnp-lab step':>13s} {'/t1':>6s} {'P calls':>9s} {'speedup':>8s} "
            f"{'i-PI':>9s} {'×':>6s} {'i-PI batch':>11s} {'×':>6s}"
        )
        for p, row in r["beads"].items():
            s = row["step_s"]
            line = (
                f"{p:4d} {s * 1e3:10.1f} ms {s / t1:6.1f} {row['separate_calls_s'] * 1e3:6.1f} ms "
                f"{row['separate_calls_s'] / s:8.1f}"
            )
            if "ipi_step_s" in row:
                line += (
                    f" {row['ipi_step_s'] * 1e3:6.1f} ms {row['ipi_step_s'] / s:6.1f}"
                    f" {row['ipi_batched_step_s'] * 1e3:8.1f} ms "
                    f"{row['ipi_batched_step_s'] / s:6.1f}"
                )
            print(line)
        for p, row in r["beads"].items():
            print(f"  P={p}: cost per bead / single call = {row['step_s'] / p / t1:.2f}")
    print(f"\n→ {out}")
    return report


if __name__ == "__main__":
    main()
