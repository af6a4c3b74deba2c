"""The notebooks in notebooks/ run top to bottom (nbclient, in a scratch folder, in order:
02 reuses the dataset 01 writes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [
    "01_build_dataset",
    "02_train_potential",
    "03_active_learning",
    "04_crystal_growth",
    "05_hydrogen_bonds",
    "06_pimd_kie",
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


def test_notebooks_have_no_committed_outputs():
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, scratch):
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", scratch)
    nb = nbformat.read(scratch / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(scratch)}},
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    expected = {
        "01_build_dataset": "labelled",
        "02_train_potential": "test energy MAE",
        "03_active_learning": "n_labels",
        "04_crystal_growth": "environments catalogued",
        "05_hydrogen_bonds": "held-out MAE",
        "06_pimd_kie": "RPMD / exact",
    }[name]
    assert expected in text
