"""The job store: one SQLite file (WAL, busy timeout, versioned schema) of jobs and events.

Rows hold ids, status and metadata; artefacts live in files the jobs write. Progress is
an append-only ``events`` table (job, step, time, payload) written by the worker and read
with ``since=<event id>``. Each job records the pid *and* the start time of its worker
process, so :meth:`JobStore.reconcile` (run at server start-up) can tell a live worker from
a vanished one, or from an unrelated process that reused the pid, and mark the vanished
ones ``interrupted`` (resumable).

Statuses: ``queued`` → ``running`` → ``completed`` | ``failed`` | ``cancelled`` |
``interrupted``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nnp_lab.errors import InputError

SCHEMA_VERSION = 1
STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "cancelled", "interrupted")

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT,
            spec TEXT NOT NULL,
            root TEXT NOT NULL,
            status TEXT NOT NULL,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            heartbeat REAL,
            pid INTEGER,
            proc_start INTEGER,
            progress REAL,
            message TEXT,
            error TEXT,
            result TEXT,
            log_path TEXT,
            attempts INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX jobs_status ON jobs(status)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            time REAL NOT NULL,
            step TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX events_job ON events(job_id, id)",
    ]
}


def process_start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces: fields after the closing parenthesis
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 of proc(5): starttime


def process_alive(pid: int | None, start: int | None) -> bool:
    """Whether ``pid`` runs and is the same process that started at ``start``."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_start_time(pid)
    if now is None:
        return Path("/proc").exists() is False  # no /proc: trust the pid check
    if start is not None and now != start:
        return False  # the pid was reused
    try:  # a zombie (exited, not reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class JobStore:
    """Jobs and their events in one SQLite file.

    Example::

        store = JobStore("jobs.sqlite")
        job_id = store.create(spec_dict, kind="train", root="/home/me/project")
        store.events(job_id, since=0)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            raw = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            raw.execute("PRAGMA busy_timeout=30000")
            mode = raw.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # outside a transaction
            raw.close()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path} is not a job store (SQLite): {exc}") from None
        if mode != "wal":
            raise InputError(f"{self.path}: cannot switch the job store to WAL mode ({mode})")
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise InputError(
                    f"{self.path} has job-store schema {current}, newer than this nnp-lab "
                    f"({SCHEMA_VERSION}); upgrade nnp-lab or use another file"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[version]:
                    db.execute(stmt)
            if current != SCHEMA_VERSION:
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open the job store {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # ------------------------------------------------------------------ jobs
    def create(self, spec: dict[str, Any], kind: str, root: str, name: str | None = None) -> str:
        """A new ``queued`` job; returns its id."""
        job_id = uuid.uuid4().hex[:12]
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, name, spec, root, status, created) "
                "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                (job_id, kind, name, json.dumps(spec), str(root), time.time()),
            )
            self._event(db, job_id, "status", {"status": "queued"})
        return job_id

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's row as a dict (``spec`` and ``result`` decoded); KeyError if unknown."""
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return _decode(row)

    def list(self, status: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Jobs, newest first (optionally of one status)."""
        with self._db() as db:
            if status is None:
                rows = db.execute(
                    "SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM jobs WHERE status = ? ORDER BY created DESC LIMIT ?",
                    (status, limit),
                ).fetchall()
        return [_decode(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of a job (``status`` changes also append a status event)."""
        allowed = {
            "status",
            "started",
            "finished",
            "heartbeat",
            "pid",
            "proc_start",
            "progress",
            "message",
            "error",
            "result",
            "log_path",
            "attempts",
        }
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown job fields {sorted(bad)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}")
        if "result" in fields and not isinstance(fields["result"], (str, type(None))):
            fields["result"] = json.dumps(fields["result"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._db() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))
            if "status" in fields:
                payload = {"status": fields["status"]}
                if fields.get("error"):
                    payload["error"] = fields["error"]
                self._event(db, job_id, "status", payload)

    def transition(self, job_id: str, allowed_from: tuple[str, ...], **fields: Any) -> bool:
        """Atomically update a job only if its status is in ``allowed_from``."""
        with self._db() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            if row["status"] not in allowed_from:
                return False
            cols = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))
            if "status" in fields:
                self._event(db, job_id, "status", {"status": fields["status"]})
        return True

    # ------------------------------------------------------------------ events
    @staticmethod
    def _event(db: sqlite3.Connection, job_id: str, step: str, payload: dict[str, Any]) -> int:
        cur = db.execute(
            "INSERT INTO events (job_id, time, step, payload) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), step, json.dumps(payload, default=str)),
        )
        return int(cur.lastrowid)

    def add_event(self, job_id: str, step: str, payload: dict[str, Any]) -> int:
        """Append a progress event; returns its id."""
        with self._db() as db:
            return self._event(db, job_id, step, payload)

    def events(self, job_id: str, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events of a job with id > ``since``, oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
                (job_id, int(since), int(limit)),
            ).fetchall()
        return [
            {
                "id": r["id"],
                "time": r["time"],
                "step": r["step"],
                "payload": json.loads(r["payload"]),
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ start-up
    def reconcile(self) -> list[str]:
        """Mark queued/running jobs whose worker process is gone ``interrupted``.

        Returns the ids marked. A job with a live worker (same pid *and* start time) is
        left alone: workers run detached and survive a server restart. Queued jobs never
        launched stay queued.
        """
        marked = []
        for job in self.list(status="running") + self.list(status="queued"):
            if job["status"] == "queued" and job["pid"] is None:
                continue  # waiting for a slot: the next dispatch starts it
            if not process_alive(job["pid"], job["proc_start"]):
                if self.transition(
                    job["id"],
                    ACTIVE,
                    status="interrupted",
                    finished=time.time(),
                    message="the worker process is gone (server or machine restart?)",
                ):
                    marked.append(job["id"])
        return marked


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["spec"] = json.loads(d["spec"])
    d["result"] = json.loads(d["result"]) if d.get("result") else None
    return d
