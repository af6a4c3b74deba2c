"""Jobs: the SQLite store, detached workers, cancel, reconcile after a lost worker, resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest
import xarray as xr

from nnp_lab.errors import ConfigError, InputError
from nnp_lab.jobs.runner import JobManager
from nnp_lab.jobs.specs import parse_spec
from nnp_lab.jobs.store import SCHEMA_VERSION, JobStore, process_alive, process_start_time

TRAIN = {
    "kind": "train",
    "dataset": "cu.nc",
    "out": "run",
    "device": "cpu",
    "config": {
        "model": {"descriptor": "metal", "hidden": [8]},
        "training": {"epochs": 4, "batch_size": 4, "checkpoint_every": 1},
    },
}


@pytest.fixture
def root(tmp_path, cu_dataset):
    cu_dataset.save(tmp_path / "cu.nc")
    return tmp_path


def wait_for(store: JobStore, job_id: str, statuses, timeout: float = 240.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = store.get(job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {store.get(job_id)['status']} after {timeout} s")


def test_store_is_wal_versioned_and_takes_concurrent_writers(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    ids: list[str] = []
    lock = threading.Lock()

    def submit(k: int) -> None:
        job_id = JobStore(store.path).create({"k": k}, kind="train", root=str(tmp_path))
        with lock:
            ids.append(job_id)

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.list()
    assert len(rows) == 50 and len({r["id"] for r in rows}) == 50 == len(set(ids))
    assert sorted(r["spec"]["k"] for r in rows) == list(range(50))
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(InputError, match="newer than this nnp-lab"):
        JobStore(store.path)


def test_specs_name_the_bad_field():
    with pytest.raises(ConfigError, match="epoch: unknown field"):
        parse_spec({**TRAIN, "config": {"training": {"epoch": 3}}})
    with pytest.raises(ConfigError, match="device"):
        parse_spec({**TRAIN, "device": "gpu0"})
    with pytest.raises(ConfigError, match="kind"):
        parse_spec({"kind": "bake", "dataset": "x"})


def test_paths_outside_the_root_are_refused(root):
    mgr = JobManager(root / "state" / "jobs.sqlite", root)
    for bad in ("../cu.nc", "/etc/passwd"):
        with pytest.raises(InputError, match=r"root|relative|'\.\.'"):
            mgr.submit({**TRAIN, "dataset": bad})
    (root / "escape").symlink_to("/tmp")
    with pytest.raises(InputError, match="outside the server root"):
        mgr.submit({**TRAIN, "out": "escape/run"})
    assert mgr.store.list() == []  # nothing recorded, nothing started


def test_train_job_runs_detached_to_completion_with_events(root):
    mgr = JobManager(root / "state" / "jobs.sqlite", root)
    job = mgr.submit(TRAIN)
    done = wait_for(mgr.store, job["id"], ("completed", "failed"))
    assert done["status"] == "completed", done["error"]
    assert done["progress"] == 1.0 and done["result"]["model"] == "run/model.pt"
    assert (root / "run" / "model.pt").exists()
    events = mgr.store.events(job["id"])
    epochs = [e["payload"]["epoch"] for e in events if e["step"] == "epoch"]
    assert epochs == [1, 2, 3, 4]
    statuses = [e["payload"]["status"] for e in events if e["step"] == "status"]
    assert statuses == ["queued", "running", "completed"]
    later = mgr.store.events(job["id"], since=events[-2]["id"])
    assert [e["id"] for e in later] == [events[-1]["id"]]
    with xr.open_dataset(root / "run" / "metrics.nc", engine="h5netcdf") as m:
        assert m.sizes["epoch"] == 4


def test_failed_job_shows_failed_with_the_reason(root):
    mgr = JobManager(root / "state" / "jobs.sqlite", root)
    job = mgr.submit({**TRAIN, "dataset": "missing.nc"})
    done = wait_for(mgr.store, job["id"], ("completed", "failed"))
    assert done["status"] == "failed" and "missing.nc" in done["error"]


def test_cancel_stops_a_running_job_and_leaves_no_partial_files(root):
    mgr = JobManager(root / "state" / "jobs.sqlite", root)
    long = {**TRAIN, "config": {**TRAIN["config"], "training": {"epochs": 400, "batch_size": 2}}}
    job = mgr.submit(long)
    deadline = time.time() + 120
    while not any(e["step"] == "epoch" for e in mgr.store.events(job["id"])):
        assert time.time() < deadline, "training never started"
        time.sleep(0.1)
    out = mgr.cancel(job["id"])
    assert out["status"] == "cancelled"
    assert not process_alive(out["pid"], out["proc_start"])
    leftovers = [p.name for p in (root / "run").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    with pytest.raises(InputError, match="not queued or running"):
        mgr.cancel(job["id"])


def test_reconcile_marks_a_vanished_worker_interrupted_then_resume_finishes(root):
    """SIGKILL the worker (as a machine restart would), reconcile as a restarted server
    does, resume: training continues from its checkpoint to the end."""
    mgr = JobManager(root / "state" / "jobs.sqlite", root)
    spec = {**TRAIN, "config": {**TRAIN["config"], "training": {"epochs": 30, "batch_size": 2}}}
    job = mgr.submit(spec)
    deadline = time.time() + 120
    while len([e for e in mgr.store.events(job["id"]) if e["step"] == "epoch"]) < 2:
        assert time.time() < deadline
        time.sleep(0.05)
    running = mgr.store.get(job["id"])
    assert running["status"] == "running" and running["proc_start"] == process_start_time(
        running["pid"]
    )
    os.killpg(running["pid"], signal.SIGKILL)
    while process_alive(running["pid"], running["proc_start"]):
        time.sleep(0.05)
        mgr._reap()
    assert mgr.store.get(job["id"])["status"] == "running"  # nobody wrote a final state
    restarted = JobStore(mgr.store.path)
    assert restarted.reconcile() == [job["id"]]
    assert restarted.get(job["id"])["status"] == "interrupted"
    mgr.resume(job["id"])
    done = wait_for(mgr.store, job["id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["attempts"] == 2
    epochs = [e["payload"]["epoch"] for e in mgr.store.events(job["id"]) if e["step"] == "epoch"]
    assert epochs[-1] == 30 and epochs.count(1) == 1  # resumed, not restarted from epoch 1
