"""Launch, cancel and resume jobs: each runs in its own detached worker process.

The executor is a local subprocess per job (one ``python -m nnp_lab.jobs.worker``, in a
new session so that restarting Jupyter does not kill it); its output goes to a log file
next to the store. Submitting validates the spec and its paths first, so bad input is
refused before anything starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nnp_lab.errors import InputError
from nnp_lab.jobs.execute import check_paths
from nnp_lab.jobs.specs import parse_spec
from nnp_lab.jobs.store import ACTIVE, JobStore, process_alive


class JobManager:
    """Submit/cancel/resume jobs of one store, running them in ``root``.

    At most ``max_running`` workers run at once (default: the number of CPU cores, at
    least 1); further jobs wait ``queued`` and :meth:`dispatch` — called after every
    submission and periodically by the server — starts them as slots free up.
    """

    def __init__(
        self,
        store: JobStore | str | os.PathLike,
        root: str | os.PathLike,
        max_running: int | None = None,
    ):
        self.store = store if isinstance(store, JobStore) else JobStore(store)
        self.root = Path(root).resolve()
        self.log_dir = self.store.path.parent / "job-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.max_running = max(1, int(max_running or os.cpu_count() or 1))
        self._children: list[subprocess.Popen] = []

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Validate ``spec`` and record it; its worker starts when a slot is free."""
        parsed = parse_spec(spec)
        check_paths(parsed, self.root)
        data = parsed.model_dump(mode="json", exclude_none=True)
        job_id = self.store.create(data, kind=parsed.kind, root=str(self.root), name=parsed.name)
        self.dispatch()
        return self.store.get(job_id)

    def dispatch(self) -> list[str]:
        """Start queued jobs (oldest first) while fewer than ``max_running`` run."""
        self._reap()
        running = [
            j for j in self.store.list(status="running") if process_alive(j["pid"], j["proc_start"])
        ]
        starting = [j for j in self.store.list(status="queued") if j["pid"] is not None]
        free = self.max_running - len(running) - len(starting)
        started = []
        waiting = [j for j in self.store.list(status="queued") if j["pid"] is None]
        for job in sorted(waiting, key=lambda j: j["created"])[: max(free, 0)]:
            self._launch(job["id"], resume=bool(job["attempts"]))
            started.append(job["id"])
        return started

    def _launch(self, job_id: str, resume: bool) -> None:
        log = self.log_dir / f"{job_id}.log"
        cmd = [
            sys.executable,
            "-m",
            "nnp_lab.jobs.worker",
            "--db",
            str(self.store.path),
            "--job",
            job_id,
        ]
        if resume:
            cmd.append("--resume")
        env = {**os.environ}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        from nnp_lab.jobs.store import process_start_time

        # the worker records itself too; this covers the moment before it starts
        self.store.update(
            job_id, pid=proc.pid, proc_start=process_start_time(proc.pid), log_path=str(log)
        )
        self._children.append(proc)

    def cancel(self, job_id: str, wait_s: float = 10.0) -> dict[str, Any]:
        """SIGTERM the worker (it marks itself cancelled); a job with no live worker is
        marked cancelled directly."""
        job = self.store.get(job_id)
        if job["status"] not in ACTIVE:
            raise InputError(f"job {job_id} is {job['status']}, not queued or running")
        if process_alive(job["pid"], job["proc_start"]):
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.time() + wait_s
            while time.time() < deadline:  # the worker writes "cancelled" itself, then exits
                alive = process_alive(job["pid"], job["proc_start"])
                if self.store.get(job_id)["status"] not in ACTIVE and not alive:
                    return self.store.get(job_id)
                if not alive:
                    break
                time.sleep(0.05)
                self._reap()
        # no live worker (never started, or killed before it could answer)
        self.store.transition(job_id, ACTIVE, status="cancelled", message="cancelled")
        return self.store.get(job_id)

    def _reap(self) -> None:
        """Collect exited workers (no zombies)."""
        self._children = [p for p in self._children if p.poll() is None]

    def resume(self, job_id: str) -> dict[str, Any]:
        """Start an interrupted, failed or cancelled job again, from its checkpoints."""
        job = self.store.get(job_id)
        if job["status"] not in ("interrupted", "failed", "cancelled"):
            raise InputError(
                f"job {job_id} is {job['status']}: only interrupted, failed or cancelled "
                "jobs can be resumed"
            )
        self.store.transition(
            job_id, (job["status"],), status="queued", message="resuming", pid=None, proc_start=None
        )
        self.dispatch()
        return self.store.get(job_id)
