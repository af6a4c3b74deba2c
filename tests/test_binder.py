"""The binder/ files alone make a working lab environment: a fresh venv built from
binder/requirements.txt and binder/postBuild (as repo2docker does, minus Docker) has the
server and lab extensions enabled and imports what the notebooks import."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def notebook_imports() -> list[str]:
    """Every top-level import statement of the notebooks' code cells, one line each
    (parenthesised multi-line imports included; IPython magics skipped)."""
    lines = []
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"]).splitlines()
                code = "\n".join(ln for ln in src if not ln.lstrip().startswith(("%", "!")))
                tree = ast.parse(code)
                lines += [
                    ast.unparse(node)
                    for node in tree.body
                    if isinstance(node, ast.Import | ast.ImportFrom)
                ]
    return sorted(set(lines))


def test_notebook_imports_are_found_whole():
    """The import lines handed to the binder venv are complete statements."""
    imports = notebook_imports()
    assert (
        "from nnp_lab.apps.hbond.model import held_out_split, interaction_energies, "
        "point_families, training_points" in imports
    )
    compile("\n".join(imports), "<notebook imports>", "exec")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to build the extension")
def test_binder_environment_from_its_files_alone(tmp_path):
    venv = tmp_path / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_ = venv / "bin"
    # the CPU wheel index is not reachable from CI: fail fast on it, use the default index
    env = {
        **os.environ,
        "PATH": f"{bin_}:{os.environ['PATH']}",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "5",
        "VIRTUAL_ENV": str(venv),
    }
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [str(bin_ / "pip"), "install", "--quiet", "-r", str(ROOT / "binder" / "requirements.txt")],
        check=True,
        env=env,
        cwd=ROOT,
        timeout=1200,
    )
    subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")], check=True, env=env, cwd=ROOT, timeout=1200
    )
    server = subprocess.run(
        [str(bin_ / "jupyter"), "server", "extension", "list"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "nnp_lab" in server.stdout + server.stderr and "OK" in server.stdout + server.stderr
    lab = subprocess.run(
        [str(bin_ / "jupyter"), "labextension", "list"], capture_output=True, text=True, env=env
    )
    listing = lab.stdout + lab.stderr
    assert "nnp-lab-extension" in listing and "enabled" in listing
    assert "nglview-js-widgets" in listing and "jupyterlab-manager" in listing
    code = "\n".join(notebook_imports()) + "\nprint('imports ok')"
    out = subprocess.run(
        [str(bin_ / "python"), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0 and "imports ok" in out.stdout, out.stderr[-2000:]
