"""The worker process of one job: ``python -m nnp_lab.jobs.worker --db DB --job ID``.

It runs detached from the server (its own session), records its pid and process start
time, beats a heartbeat every few seconds, turns progress callbacks into events, and
writes its own final status: ``completed`` with the result, ``failed`` with the error,
or ``cancelled`` after SIGTERM (every artefact is written atomically, so a cancelled job
leaves no half-written file). A worker killed outright leaves ``running`` behind, which
the next :meth:`~nnp_lab.jobs.store.JobStore.reconcile` turns into ``interrupted``.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import traceback
from typing import Any

HEARTBEAT_S = 5.0


class Cancelled(BaseException):
    """Raised in the worker by SIGTERM (a BaseException: library code cannot swallow it)."""


def run(db: str, job_id: str, resume: bool = False) -> int:
    """Execute job ``job_id`` of store ``db`` in this process; returns the exit code."""
    from nnp_lab.jobs.execute import execute
    from nnp_lab.jobs.specs import parse_spec
    from nnp_lab.jobs.store import JobStore, process_start_time

    store = JobStore(db)
    job = store.get(job_id)
    pid = os.getpid()
    if not store.transition(
        job_id,
        ("queued", "interrupted", "failed", "cancelled"),
        status="running",
        pid=pid,
        proc_start=process_start_time(pid),
        started=time.time(),
        heartbeat=time.time(),
        finished=None,
        error=None,
        progress=0.0,
        attempts=job["attempts"] + 1,
    ):
        return 3  # someone else runs it (or it is done)

    def on_term(signum: int, frame: Any) -> None:
        raise Cancelled()

    signal.signal(signal.SIGTERM, on_term)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                store.update(job_id, heartbeat=time.time())
            except Exception:  # the store is busy or gone: the main thread will notice
                pass

    threading.Thread(target=beat, daemon=True).start()

    def progress(step: str, payload: dict[str, Any]) -> None:
        store.add_event(job_id, step, payload)
        frac = payload.get("fraction")
        fields: dict[str, Any] = {"heartbeat": time.time(), "message": step}
        if isinstance(frac, (int, float)):
            fields["progress"] = float(min(max(frac, 0.0), 1.0))
        store.update(job_id, **fields)

    try:
        spec = parse_spec(job["spec"])
        result = execute(spec, job["root"], progress, resume=resume)
    except Cancelled:
        stop.set()
        store.update(job_id, status="cancelled", finished=time.time(), message="cancelled")
        return 4
    except BaseException as exc:
        stop.set()
        detail = traceback.format_exc(limit=20)
        store.add_event(job_id, "error", {"error": str(exc), "traceback": detail})
        store.update(
            job_id, status="failed", finished=time.time(), error=f"{type(exc).__name__}: {exc}"
        )
        return 1
    stop.set()
    store.update(
        job_id,
        status="completed",
        finished=time.time(),
        progress=1.0,
        result=result,
        message="completed",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run one nnp-lab job")
    p.add_argument("--db", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    return run(args.db, args.job, resume=args.resume)


if __name__ == "__main__":
    raise SystemExit(main())
