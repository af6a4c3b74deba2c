"""Energy + forces throughput of nnp-lab backends vs TorchANI on periodic water boxes.

    python -m benchmarks.throughput                       # default sizes, prints a table
    python -m benchmarks.throughput --sizes 3000 30000 --repeats 5 --docs

Every case runs in its own subprocess (clean peak-RSS reading): it builds the model and
the box, warms up on a small box (kernel compilation, caches), then times ``repeats``
evaluations of energy and forces including the neighbor list, and reports the median.
Models are ANI-1x sized (H, C, N, O; 384 features; networks 160/144/128-…-96-1, CELU)
with random weights, in the same precision for every code. TorchANI 2.9 is assembled
exactly as its ANI-1x with a cell-list neighbor list (it ships no weights here).
Results go to ``benchmarks/results/throughput-<timestamp>.json`` and a scaling plot PNG;
``--docs`` also rewrites docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ANI1X_HIDDEN = {"H": [160, 128, 96], "C": [144, 112, 96], "N": [128, 112, 96], "O": [128, 112, 96]}
# ≈ multiply–adds of the ANI-1x networks per atom, forward + input-gradient backward, plus
# the descriptor: 0.52 MFLOP per atom for energy + forces; the 2-core peak of this machine
# (≈ 100 GFLOP/s float32) bounds the throughput at ≈ 1.9e5 atoms/s.
FLOP_PER_ATOM = 0.52e6
CEILING_ATOMS_PER_S = 1.9e5


# ---------------------------------------------------------------------------- one case
def _nnp_model(kind: str, backend: str, members: int, dtype):
    import torch

    from nnp_lab import Potential
    from nnp_lab.models.committee import Committee

    pots = []
    for seed in range(members):
        torch.manual_seed(seed)
        pot = Potential(species=["H", "C", "N", "O"], descriptor="ani1x", hidden=ANI1X_HIDDEN)
        pot.descriptor.backend = backend
        pots.append(pot.to(dtype))
    if kind == "single":
        return pots[0]
    com = Committee(pots)
    com.backend = backend
    return com


def _torchani_model(members: int, dtype):
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    from torchani.arch import Assembler

    asm = Assembler(periodic_table_index=True)
    asm.set_symbols(("H", "C", "N", "O"))
    asm.set_atomic_networks(ctor="ani1x")
    asm.set_global_cutoff_fn("cosine")
    asm.set_aev_computer(angular="ani1x", radial="ani1x", strategy="pyaev")
    asm.set_neighborlist("cell_list")
    asm.set_gsaes_as_self_energies("wb97x-631gd")
    return asm.assemble(members).to(dtype)


def run_case(
    code: str, backend: str, kind: str, n_atoms: int, repeats: int, dtype_name: str
) -> dict[str, Any]:
    """Time one configuration in this process; returns the measurement record."""
    import torch

    from benchmarks.systems import water_box

    dtype = getattr(torch, dtype_name)
    members = 8 if kind == "committee" else 1
    atoms = water_box(n_atoms)
    warm = water_box(3000, seed=1)
    if code == "nnp-lab":
        from nnp_lab.data.batch import Batch

        model = _nnp_model(kind, backend, members, dtype)

        def evaluate(a):
            out = model(Batch.from_atoms(a, dtype=dtype, validate=False), forces=True)
            key = "forces" if kind == "single" else "forces_mean"
            return out[key]
    else:
        model = _torchani_model(members, dtype)

        def evaluate(a):
            z = torch.tensor(a.numbers)[None]
            x = torch.tensor(a.positions, dtype=dtype)[None].requires_grad_()
            cell = torch.tensor(a.cell.array, dtype=dtype)
            pbc = torch.tensor([True, True, True])
            e = model((z, x), cell=cell, pbc=pbc).energies
            (g,) = torch.autograd.grad(e.sum(), x)
            return -g

    t0 = time.perf_counter()
    evaluate(warm)
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f = evaluate(atoms)
        times.append(time.perf_counter() - t0)
        del f
    median = statistics.median(times)
    return {
        "code": code,
        "backend": backend,
        "kind": kind,
        "members": members,
        "n_atoms": len(atoms),
        "dtype": dtype_name,
        "repeats": repeats,
        "seconds": median,
        "times": times,
        "atoms_per_s": len(atoms) / median,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "warmup_s": warmup_s,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------- driver
def _spawn(args: list[str], timeout: float) -> dict[str, Any] | None:
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--case", *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if res.returncode == -9:
        return {"error": "killed (SIGKILL: out of memory)"}
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {res.returncode}: {tail[0][:200]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _available_backends() -> list[str]:
    import torch

    from nnp_lab.kernels.backend import _loader, triton_usable

    out = ["torch"]
    if _loader("cpu") is not None:
        out.append("cpu")
    if (
        triton_usable(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        and torch.cuda.is_available()
    ):
        if _loader("triton") is not None:
            out.append("triton")
    return out


def machine() -> dict[str, Any]:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "threads": torch.get_num_threads(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["memory_gb"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1
        )
    except (OSError, ValueError):
        pass
    return info


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table: one row per case, with speed-ups against TorchANI of the same kind."""
    ref = {
        (r["kind"], r["n_atoms"]): r["atoms_per_s"]
        for r in records
        if r.get("code") == "torchani" and "atoms_per_s" in r
    }
    lines = [
        "| atoms | model | code | backend | atoms/s | vs TorchANI | of ceiling | peak RSS (GB) |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        if "error" in r:
            lines.append(
                f"| {r['n_atoms']} | {r['kind']} | {r['code']} | {r['backend']} | {r['error']} | | | |"
            )
            continue
        base = ref.get((r["kind"], r["n_atoms"]))
        speed = f"{r['atoms_per_s'] / base:.2f}×" if base else "–"
        ceiling = f"{r['atoms_per_s'] * r['members'] / CEILING_ATOMS_PER_S:.1%}"
        lines.append(
            f"| {r['n_atoms']} | {r['kind']} ({r['members']}) | {r['code']} | {r['backend']} | "
            f"{r['atoms_per_s']:,.0f} | {speed} | {ceiling} | {r['peak_rss_gb']:.2f} |"
        )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        if "atoms_per_s" in r:
            label = f"{r['code']} {r['backend']} {r['kind']}"
            series.setdefault(label, []).append((r["n_atoms"], 1e6 / r["atoms_per_s"]))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms (periodic water box)")
    ax.set_ylabel("µs per atom (energy + forces)")
    ax.set_title("Scaling: flat lines = linear scaling")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", nargs=6, metavar=("CODE", "BACKEND", "KIND", "N", "REPEATS", "DTYPE"))
    p.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000, 300000, 1000000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--big-repeats", type=int, default=1, help="repeats above 100k atoms")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--backends", nargs="+", default=None)
    p.add_argument("--torchani-max", type=int, default=300000, help="largest box for TorchANI")
    p.add_argument("--committee-max", type=int, default=30000, help="largest box for committees")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    p.add_argument("--docs", action="store_true", help="rewrite docs/performance.md")
    args = p.parse_args(argv)

    if args.case:
        code, backend, kind, n, repeats, dtype = args.case
        print(json.dumps(run_case(code, backend, kind, int(n), int(repeats), dtype)))
        return 0

    backends = args.backends or _available_backends()
    records = []
    for n in args.sizes:
        repeats = args.repeats if n <= 100_000 else args.big_repeats
        kinds = ["single"] + (["committee"] if n <= args.committee_max else [])
        for kind in kinds:
            cases = [("nnp-lab", b) for b in backends]
            if n <= args.torchani_max:
                cases.append(("torchani", "pyaev+cell_list"))
            for code, backend in cases:
                rec = _spawn([code, backend, kind, str(n), str(repeats), args.dtype], args.timeout)
                rec = {
                    "code": code,
                    "backend": backend,
                    "kind": kind,
                    "n_atoms": n,
                    "members": 8 if kind == "committee" else 1,
                    **rec,
                }
                records.append(rec)
                shown = (
                    f"{rec['atoms_per_s']:,.0f} atoms/s, {rec['peak_rss_gb']:.2f} GB"
                    if "atoms_per_s" in rec
                    else rec["error"]
                )
                print(f"{n:>8} {kind:<9} {code:<8} {backend:<16} {shown}", flush=True)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.throughput " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    out = {
        "machine": machine(),
        "command": command.strip(),
        "dtype": args.dtype,
        "records": records,
    }
    (RESULTS / f"throughput-{stamp}.json").write_text(json.dumps(out, indent=2))
    png = RESULTS / f"throughput-{stamp}.png"
    plot(records, png)
    md = table(records)
    print()
    print(md)
    print(f"\nresults: {RESULTS / f'throughput-{stamp}.json'}, plot: {png}")
    if args.docs:
        write_docs(out, md, png)
    return 0


def write_docs(out: dict[str, Any], md: str, png: Path) -> None:
    m = out["machine"]
    text = f"""# Performance

Latest run of the throughput benchmark (energy + forces, neighbor list included, warm-up
excluded, median of repeats; {out["dtype"]}).

- Machine: {m.get("cpu")}, {m.get("cores")} cores, {m.get("memory_gb", "?")} GB RAM, GPU: {m.get("gpu") or "none"}
- Software: torch {m.get("torch")}, Python {m.get("python")}; {m.get("threads")} torch threads,
  `OMP_WAIT_POLICY={m.get("omp_wait_policy")}`; every case runs in its own process
- Command: `{out["command"]}`
- Plot: `{png.relative_to(ROOT)}`

"vs TorchANI" compares the same kind (single model or 8-member committee/ensemble) on the
same box; "of ceiling" is the fraction of ≈{CEILING_ATOMS_PER_S:.1e} atoms/s (model-atoms
per second for committees), the arithmetic bound of an ANI-1x-sized model
(≈ {FLOP_PER_ATOM / 1e6:.2f} MFLOP per atom) on this 2-core CPU.

{md}
"""
    path = ROOT / "docs" / "performance.md"
    if path.exists() and "\n## Assessment" in path.read_text():  # hand-written, kept
        text += "\n## Assessment" + path.read_text().split("\n## Assessment", 1)[1]
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
