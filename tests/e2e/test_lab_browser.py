"""JupyterLab in a real browser (Debian's Chromium driven by Playwright): the NNP Lab
sidebar launches a training job from its form, the job reaches 100 % and "completed",
and "Open in notebook" opens a notebook that runs. Screenshots go to ``tests/e2e/artifacts``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import ARTIFACTS, CHROMIUM, FLAGS, free_port

pytestmark = pytest.mark.slow

TOKEN = "nnp-lab-e2e"

if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian chromium is not installed (make test installs it: apt-get install chromium)",
        allow_module_level=True,
    )


@pytest.fixture
def lab(tmp_path, cu_dataset):
    """JupyterLab on 127.0.0.1 with a token; no news popup; stopped after the test."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    cu_dataset.save(root / "cu.nc")
    settings = state / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = free_port()
    env = {**os.environ, "NNP_LAB_JOB_DB": str(state / "jobs.sqlite")}
    log = open(state / "lab.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
            f"--LabServerApp.user_settings_dir={state / 'user-settings'}",
            f"--LabServerApp.workspaces_dir={state / 'workspaces'}",
            "--allow-root",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5)
            break
        except OSError:
            assert proc.poll() is None, (state / "lab.log").read_text()
            assert time.time() < deadline, "JupyterLab did not start"
            time.sleep(0.5)
    yield {"url": url, "root": root, "state": state}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        pg = ctx.new_page()
        yield pg
        ctx.close()
        browser.close()


def test_sidebar_launches_training_and_opens_the_result_in_a_notebook(lab, page):
    page.goto(f"{lab['url']}/lab?token={TOKEN}")
    tab = page.locator('li[data-id="nnp-lab-panel"]')
    tab.wait_for(timeout=60_000)
    tab.click()
    panel = page.locator("#nnp-lab-panel")
    panel.locator('[data-nnp="form"]').wait_for()
    panel.locator('[data-nnp="kind"]').select_option("train")
    panel.locator('[data-nnp="dataset"] option[value="cu.nc"]').wait_for(state="attached")
    panel.locator('[data-nnp="dataset"]').select_option("cu.nc")
    panel.locator('[data-nnp="out"]').fill("runs/e2e")
    panel.locator('[data-nnp="epochs"]').fill("3")
    panel.locator('[data-nnp="device"]').select_option("cpu")
    panel.locator('[data-nnp="name"]').fill("e2e-train")
    page.screenshot(path=str(ARTIFACTS / "01-form.png"))
    panel.locator('[data-nnp="submit"]').click()
    job = panel.locator('[data-nnp="job"]', has_text="e2e-train")
    job.wait_for(timeout=30_000)
    done = panel.locator('[data-nnp="job"][data-status="completed"]', has_text="e2e-train")
    done.wait_for(timeout=240_000)
    assert done.locator('[data-nnp="percent"]').inner_text() == "100 %"
    assert done.locator('[data-nnp="progress"]').get_attribute("value") == "100"
    page.screenshot(path=str(ARTIFACTS / "02-completed.png"))
    assert (lab["root"] / "runs" / "e2e" / "model.pt").exists()

    done.locator('[data-nnp="open-in-notebook"]').click()
    notebook = page.locator(".jp-NotebookPanel").first
    notebook.wait_for(timeout=60_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
        timeout=120_000
    )
    made = list((lab["root"] / "nnp-lab-notebooks").glob("e2e-train-*.ipynb"))
    assert len(made) == 1
    n_code = sum(c["cell_type"] == "code" for c in json.loads(made[0].read_text())["cells"])
    run_all_cells(page)  # once the kernel is really up (the status bar says Idle)
    # every code cell runs: wait for the last one's execution count, then save and read back
    deadline = time.time() + 180
    while True:
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")

        nb = json.loads(made[0].read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if len(code) == n_code and all(c.get("execution_count") for c in code):
            break
        assert time.time() < deadline, "the notebook did not finish running"
        time.sleep(2)
    page.screenshot(path=str(ARTIFACTS / "03-notebook.png"))
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"], outputs
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "final validation force MAE" in text and "['Cu']" in text
    shutil.copy(lab["state"] / "lab.log", ARTIFACTS / "lab.log")


def run_all_cells(page) -> None:
    """Wait for the kernel, then Run > Run All Cells."""
    page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle")).first.wait_for(
        timeout=120_000
    )
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(
        ".lm-Menu-item",
        has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")),
    ).first.click()


def test_structure_view_draws_a_non_blank_nglview_canvas(lab, page):
    """A StructureView of a molecule coloured by a per-atom array: nglview's WebGL canvas
    appears and is not blank (pixel check on a screenshot of the canvas)."""
    _open_and_run(
        lab,
        page,
        "view.ipynb",
        "from ase.build import molecule\n"
        "from nnp_lab.widgets import StructureView\n"
        "atoms = molecule('CH3CH2OH')\n"
        "StructureView(atoms, color_by=range(len(atoms)), label='atom index')",
    )
    canvas = page.locator(".jp-OutputArea-output canvas").first
    canvas.wait_for(timeout=120_000)
    time.sleep(3)  # let NGL draw
    png = canvas.screenshot(path=str(ARTIFACTS / "04-structure-view.png"))
    page.screenshot(path=str(ARTIFACTS / "05-structure-view-page.png"))
    drawn = _drawn_fraction(png)
    assert drawn > 0.005, f"canvas looks blank ({drawn:.4f} of pixels drawn)"
    assert "atom index" in page.locator(".jp-NotebookPanel").first.inner_text()
    assert page.locator(".nnp-colourbar").count() == 1


def _open_and_run(lab, page, name: str, code: str) -> None:
    """Write a one-cell notebook into the lab's root, open it and Run All."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(code)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, lab["root"] / name)
    page.goto(f"{lab['url']}/lab/tree/{name}?token={TOKEN}")
    page.locator(".jp-NotebookPanel").first.wait_for(timeout=60_000)
    run_all_cells(page)


def _drawn_fraction(png: bytes) -> float:
    """Share of canvas pixels that differ from the background (median colour)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    background = np.median(pixels.reshape(-1, 3), axis=0)
    return float((np.abs(pixels - background).sum(axis=-1) > 30).mean())


def _big_canvas(page, on_failure: str):
    """The first output canvas of a laid-out nglview stage (> 100 px each way)."""
    js = """() => [...document.querySelectorAll('.jp-OutputArea-output canvas')]
                 .findIndex(c => c.clientWidth > 100 && c.clientHeight > 100)"""
    try:
        page.wait_for_function(f"() => ({js})() >= 0", timeout=180_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / on_failure))
        raise
    return page.locator(".jp-OutputArea-output canvas").nth(page.evaluate(js))


def test_crystal_growth_view_draws_the_film_and_follows_the_slider(lab, page):
    """CrystalGrowthView of a short bond-counting KMC growth: the film's nglview canvas
    is drawn, the curves image is there, and moving the time slider to the first
    snapshot (arrow keys on the slider handle) redraws the film and updates the caption."""
    _open_and_run(
        lab,
        page,
        "growth.ipynb",
        "from nnp_lab.apps.crystal_growth.growth import GrowthConfig, run_growth\n"
        "from nnp_lab.widgets import CrystalGrowthView\n"
        "cfg = GrowthConfig(size=16, coverage=1.5, flux=50.0, temperature=350,\n"
        "                   snapshots=3, barriers='bond_counting')\n"
        "view = CrystalGrowthView(run_growth(cfg), min_layer=0)\n"
        "view",
    )
    output = page.locator(".jp-NotebookPanel").first  # (warnings may come as outputs too)
    canvas = _big_canvas(page, "07-growth-view-missing.png")
    time.sleep(3)  # let NGL draw
    last = _drawn_fraction(canvas.screenshot(path=str(ARTIFACTS / "07-growth-view.png")))
    assert last > 0.05, f"film canvas looks blank ({last:.4f} of pixels drawn)"
    assert "1.50 ML" in output.inner_text()
    assert output.locator(".jp-OutputArea-output img").count() >= 1  # the growth curves
    page.screenshot(path=str(ARTIFACTS / "08-growth-view-page.png"))
    # drag-free slider move: focus its handle, two steps left → snapshot 0 (0.5 ML)
    handle = output.locator(".jp-OutputArea-output .noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    output.get_by_text("0.50 ML").first.wait_for(timeout=60_000)
    canvas = _big_canvas(page, "09-growth-view-missing.png")
    time.sleep(3)
    first = _drawn_fraction(canvas.screenshot(path=str(ARTIFACTS / "09-growth-view-start.png")))
    assert 0.005 < first, f"0.5 ML film canvas looks blank ({first:.4f})"


def test_hbond_explorer_draws_the_dimer_and_follows_the_distance_slider(lab, page):
    """HBondExplorer of the shipped water-dimer scan and H-bond committee: the dimer's
    nglview canvas is drawn, the energies line and the map image are there, and a step of
    the R slider (arrow key on its handle) moves the dimer: the caption's distance
    changes and the canvas is still drawn. The liquid panel (RDF, H-bond counts,
    lifetimes of the shipped 512-molecule run) is shown as a loaded image."""
    _open_and_run(
        lab,
        page,
        "hbond.ipynb",
        "from nnp_lab.apps.hbond.train import RESOURCES\n"
        "from nnp_lab.widgets import HBondExplorer\n"
        "ex = HBondExplorer(RESOURCES / 'water_dimer.nc', RESOURCES / 'hbond_committee.pt',\n"
        "                   liquid=RESOURCES / 'liquid_water.nc')\n"
        "ex",
    )
    output = page.locator(".jp-NotebookPanel").first
    canvas = _big_canvas(page, "10-hbond-explorer-missing.png")
    time.sleep(3)  # let NGL draw
    drawn = _drawn_fraction(canvas.screenshot(path=str(ARTIFACTS / "10-hbond-explorer.png")))
    assert drawn > 0.002, f"dimer canvas looks blank ({drawn:.4f} of pixels drawn)"
    text = output.inner_text()
    assert "NNP" in text and "GFN2-xTB" in text
    imgs = output.locator(".jp-OutputArea-output img")
    assert imgs.count() >= 2  # the energy map and the liquid panel
    widths = [imgs.nth(k).evaluate("(im) => im.naturalWidth") for k in range(imgs.count())]
    assert min(widths) > 100, f"an explorer image did not load: natural widths {widths}"
    assert "H-bonds per molecule" in text and "Liquid water" in text
    before = re.search(r"R = ([0-9.]+) Å", text).group(1)
    handle = output.locator(".jp-OutputArea-output .noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "(before) => { const m = document.querySelector('.jp-NotebookPanel').innerText"
        ".match(/R = ([0-9.]+) Å/); return m && m[1] !== before; }",
        arg=before,
        timeout=60_000,
    )
    page.screenshot(path=str(ARTIFACTS / "11-hbond-explorer-moved.png"))
    canvas = _big_canvas(page, "11-hbond-explorer-missing.png")
    assert _drawn_fraction(canvas.screenshot()) > 0.002


def test_kie_explorer_draws_the_ring_polymers_and_follows_the_temperature(lab, page):
    """KIEExplorer of the shipped Eckart KIE table with two short PIMD runs (H₂O, D₂O):
    the ring polymers' nglview canvas is drawn, the KIE plot image loads, and a step of the
    temperature slider (arrow key on its handle) changes the temperature in the text."""
    _open_and_run(
        lab,
        page,
        "kie.ipynb",
        "from ase.build import molecule\n"
        "from nnp_lab.apps.hbond.train import RESOURCES\n"
        "from nnp_lab.apps.kie.eckart import RESOURCE\n"
        "from nnp_lab.dynamics.pimd import RingPolymer, run_pimd, with_isotope\n"
        "from nnp_lab.widgets import KIEExplorer\n"
        "w = molecule('H2O'); w.center(vacuum=6.0); w.pbc = True\n"
        "runs = {k: run_pimd(RingPolymer(a, RESOURCES / 'water_committee.pt',\n"
        "                    {'n_beads': 8, 'temperature_K': 300.0}), 100, sample_every=10,\n"
        "                    positions_every=2, show_progress=False)\n"
        "        for k, a in (('H2O', w), ('D2O', with_isotope(w, [1, 2])))}\n"
        "KIEExplorer(RESOURCE, runs=runs)",
    )
    output = page.locator(".jp-NotebookPanel").first
    canvas = _big_canvas(page, "12-kie-explorer-missing.png")
    time.sleep(3)  # let NGL draw
    drawn = _drawn_fraction(canvas.screenshot(path=str(ARTIFACTS / "12-kie-explorer.png")))
    assert drawn > 0.002, f"ring-polymer canvas looks blank ({drawn:.4f} of pixels drawn)"
    img = output.locator(".jp-OutputArea-output img").first
    assert img.evaluate("(im) => im.naturalWidth") > 100
    assert "T = 372 K" in output.inner_text()
    handle = output.locator(".jp-OutputArea-output .noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    output.get_by_text("T = 500 K").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "13-kie-explorer-moved.png"))
