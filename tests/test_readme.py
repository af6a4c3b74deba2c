"""The README's Python example runs as written (with fewer epochs)."""

from __future__ import annotations

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README has no python example"
    code = block.group(1).replace("epochs=100", "epochs=2")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {}
        exec(compile(code, str(README), "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "cu.pt").exists() and (tmp_path / "cu.nc").exists()
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_readme_pimd_example_runs(tmp_path):
    """The README's path-integral example runs as written (fewer steps)."""
    text = README.read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "run_pimd" in b)
    code = block.replace("run_pimd(ring, 4000", "run_pimd(ring, 40")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, str(README), "exec"), {})
    finally:
        os.chdir(cwd)
    assert (tmp_path / "d2o.nc").exists()
