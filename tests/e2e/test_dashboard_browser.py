"""``nnp-lab dashboard`` serves a Panel app on 127.0.0.1 that a real browser renders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import ARTIFACTS, CHROMIUM, FLAGS, free_port

from nnp_lab.errors import InputError

pytestmark = pytest.mark.slow


def test_dashboard_refuses_a_folder_without_results(tmp_path):
    from nnp_lab.dashboards.app import resolve

    with pytest.raises(InputError, match=r"metrics\.nc"):
        resolve(tmp_path)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_training_dashboard_renders_in_chromium(tmp_path, cu_dataset):
    from playwright.sync_api import sync_playwright

    from nnp_lab import Potential, Trainer

    pot = Potential(species=["Cu"], descriptor="metal", hidden=[8])
    Trainer(pot, cu_dataset, cu_dataset, epochs=3, batch_size=8, workdir=tmp_path / "run").fit(
        show_progress=False
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nnp_lab.cli",
            "dashboard",
            str(tmp_path / "run"),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "the dashboard did not start"
                time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Training:").first.wait_for(timeout=60_000)
            img = page.locator("img").first
            img.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "06-dashboard.png"))
            box = img.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
