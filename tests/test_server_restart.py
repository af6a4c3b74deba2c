"""Real Jupyter servers started and stopped as processes: a job survives a server restart
while its worker lives, and becomes ``interrupted`` (then resumable) when the worker died
with the server (as in a machine restart)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOKEN = "nnp-lab-test-token"
SPEC = {
    "kind": "train",
    "dataset": "cu.nc",
    "out": "run",
    "device": "cpu",
    "config": {
        "model": {"descriptor": "metal", "hidden": [8]},
        # far more epochs than the test waits for: the job must still be running
        # whenever the test looks, however fast the machine; the test cancels it
        "training": {"epochs": 100000, "batch_size": 2},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``jupyter server`` on 127.0.0.1 with a token, in its own process group."""

    def __init__(self, root: Path, state: Path):
        self.root, self.state = root, state
        self.port = free_port()
        env = {**os.environ, "NNP_LAB_JOB_DB": str(state / "jobs.sqlite")}
        self.log = open(state / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                f"--ServerApp.token={TOKEN}",
                f"--ServerApp.root_dir={root}",
                "--allow-root",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while True:
            try:
                self.call("GET", "jobs")
                break
            except (urllib.error.URLError, ConnectionError):
                assert self.proc.poll() is None, (state / f"server-{self.port}.log").read_text()
                assert time.time() < deadline, "the server did not come up"
                time.sleep(0.3)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/nnp-lab/api/{path}",
            method=method,
            data=json.dumps(body).encode()
            if body is not None
            else (b"{}" if method == "POST" else None),
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def wait_epochs(server: Server, job_id: str, n: int, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ev = server.call("GET", f"jobs/{job_id}/events")
        if sum(e["step"] == "epoch" for e in ev["events"]) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} epochs after {timeout} s")


def test_restart_keeps_live_jobs_and_interrupts_vanished_ones(tmp_path, cu_dataset):
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    cu_dataset.save(root / "cu.nc")
    server = Server(root, state)
    try:
        job = server.call("POST", "jobs", {"spec": SPEC})
        wait_epochs(server, job["id"], 1)
    finally:
        server.stop()
    # 1. the server restarts; the detached worker kept running: still running
    server = Server(root, state)
    try:
        live = server.call("GET", f"jobs/{job['id']}")
        assert live["status"] == "running"
        wait_epochs(server, job["id"], 3)
        # 2. a machine restart: the worker dies with the server
        os.killpg(live["pid"], signal.SIGKILL)
    finally:
        server.stop()
    deadline = time.time() + 30
    while Path(f"/proc/{live['pid']}").exists() and time.time() < deadline:
        time.sleep(0.1)
    server = Server(root, state)
    try:
        lost = server.call("GET", f"jobs/{job['id']}")
        assert lost["status"] == "interrupted" and "worker process is gone" in lost["message"]
        before = [
            e["payload"]["epoch"]
            for e in server.call("GET", f"jobs/{job['id']}/events")["events"]
            if e["step"] == "epoch"
        ]
        server.call("POST", f"jobs/{job['id']}/resume")
        wait_epochs(server, job["id"], len(before) + 2)
        epochs = [
            e["payload"]["epoch"]
            for e in server.call("GET", f"jobs/{job['id']}/events")["events"]
            if e["step"] == "epoch"
        ]
        # resumed from the checkpoint: epoch 1 is never run again and training goes on
        # past the last epoch before the kill
        assert epochs.count(1) == 1 and max(epochs) > max(before)
        assert server.call("GET", f"jobs/{job['id']}")["status"] == "running"
        server.call("POST", f"jobs/{job['id']}/cancel")
        deadline = time.time() + 60
        while (done := server.call("GET", f"jobs/{job['id']}"))["status"] == "running":
            assert time.time() < deadline, "cancel did not stop the job"
            time.sleep(0.3)
        assert done["status"] == "cancelled"
    finally:
        server.stop()
