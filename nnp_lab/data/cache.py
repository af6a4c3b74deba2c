"""SQLite cache of reference labels, so re-labelling a dataset never pays twice.

One SQLite file (WAL mode, ``busy_timeout``, a schema-version table). Rows are keyed by
:func:`cache_key`: a SHA-256 of the geometry (atomic numbers, positions rounded to
1e-10 Å, cell, pbc), the labeler's ``method`` and ``settings()`` and the cache schema
version. Failed results are stored too, so a structure that failed is not retried unless
asked (``label_dataset(..., retry_failed=True)``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from nnp_lab.errors import FileFormatError, InputError

if TYPE_CHECKING:
    from nnp_lab.data.labelers import Labeler, LabelResult

#: Bump when the key recipe or the table layout changes; old rows then stop matching.
CACHE_SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
POSITION_DECIMALS = 10  # positions/cell rounded to 1e-10 Å before hashing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    key        TEXT PRIMARY KEY,
    method     TEXT NOT NULL,
    n_atoms    INTEGER NOT NULL,
    energy     REAL,
    forces     BLOB,
    stress     BLOB,
    status     TEXT NOT NULL,
    error      TEXT NOT NULL,
    extras     TEXT NOT NULL,
    wall_time  REAL NOT NULL,
    created    REAL NOT NULL
);
"""


def _rounded(values: np.ndarray) -> bytes:
    r = np.round(np.asarray(values, dtype=np.float64), POSITION_DECIMALS) + 0.0  # -0.0 -> 0.0
    return np.ascontiguousarray(r, dtype="<f8").tobytes()


def cache_key(atoms: Atoms, labeler: Labeler) -> str:
    """SHA-256 hex key of a structure and the labeler that would label it.

    Covers atomic numbers, positions and cell rounded to 1e-10 Å (``-0.0`` normalised
    to ``0.0``), pbc flags, ``labeler.method``, ``labeler.settings()`` (JSON, sorted keys)
    and :data:`CACHE_SCHEMA_VERSION`. Two labelers with the same method and settings are
    assumed to give the same numbers (that is the contract of ``settings()``).
    """
    h = hashlib.sha256()
    h.update(f"nnp-lab-label-cache-v{CACHE_SCHEMA_VERSION}\n".encode())
    h.update(np.ascontiguousarray(atoms.numbers, dtype="<i8").tobytes())
    h.update(_rounded(atoms.positions))
    h.update(_rounded(atoms.cell.array))
    h.update(np.asarray(atoms.pbc, dtype=np.uint8).tobytes())
    h.update(b"\nmethod=" + str(labeler.method).encode())
    h.update(b"\nsettings=" + json.dumps(labeler.settings(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def _to_blob(arr: np.ndarray | None) -> bytes | None:
    if arr is None:
        return None
    return np.ascontiguousarray(arr, dtype="<f8").tobytes()


class LabelCache:
    """Label results in one SQLite file, keyed by :func:`cache_key`.

    Safe to open from several processes (WAL mode, ``busy_timeout``); one connection per
    object guarded by a lock, so threads may share it. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            with self._conn:
                self._conn.executescript(_SCHEMA)
                row = self._conn.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    self._conn.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (CACHE_SCHEMA_VERSION,)
                    )
                    version = CACHE_SCHEMA_VERSION
                else:
                    version = int(row[0])
        except sqlite3.DatabaseError as exc:
            raise FileFormatError(
                f"{self.path} is not an nnp-lab label cache (SQLite) file: {exc}; "
                "give a new path or delete the file"
            ) from None
        if version > CACHE_SCHEMA_VERSION:
            self._conn.close()
            raise FileFormatError(
                f"label cache {self.path} has schema version {version}, newer than this "
                f"nnp-lab understands ({CACHE_SCHEMA_VERSION}); upgrade nnp-lab or use a new file"
            )
        # Older versions would be migrated here; version 1 is the first.

    # ------------------------------------------------------------------ access
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InputError(f"label cache {self.path} is closed; open a new LabelCache")
        return self._conn

    def get(self, key: str) -> LabelResult | None:
        """The cached result for ``key``, or ``None`` (counted as a hit or a miss)."""
        from nnp_lab.data.labelers import LabelResult

        with self._lock:
            row = self._db.execute(
                "SELECT n_atoms, energy, forces, stress, status, error, extras, wall_time "
                "FROM labels WHERE key = ?",
                (key,),
            ).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        n_atoms, energy, forces, stress, status, error, extras, wall_time = row
        return LabelResult(
            energy=float("nan") if energy is None else float(energy),
            forces=None
            if forces is None
            else np.frombuffer(forces, dtype="<f8").reshape(n_atoms, 3).astype(np.float64),
            stress=None
            if stress is None
            else np.frombuffer(stress, dtype="<f8").astype(np.float64),
            status=str(status),
            error=str(error),
            extras={k: float(v) for k, v in json.loads(extras).items()},
            wall_time=float(wall_time),
        )

    def put(self, key: str, result: LabelResult, method: str = "") -> None:
        """Store ``result`` under ``key`` (replacing an older row with the same key)."""
        energy = float(result.energy)
        n_atoms = 0 if result.forces is None else int(np.asarray(result.forces).shape[0])
        row: tuple[Any, ...] = (
            key,
            method,
            n_atoms,
            energy if np.isfinite(energy) else None,
            _to_blob(result.forces),
            _to_blob(result.stress),
            result.status,
            result.error,
            json.dumps({k: float(v) for k, v in result.extras.items()}, sort_keys=True),
            float(result.wall_time),
            time.time(),
        )
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO labels (key, method, n_atoms, energy, forces, stress, "
                "status, error, extras, wall_time, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM labels WHERE key = ?", (key,)).fetchone()
                is not None
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    @property
    def stats(self) -> dict[str, int]:
        """Hits and misses of :meth:`get` since this object was opened, and the row count."""
        return {"hits": self.hits, "misses": self.misses, "entries": len(self)}

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the SQLite connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> LabelCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LabelCache {self.path} hits={self.hits} misses={self.misses}>"
