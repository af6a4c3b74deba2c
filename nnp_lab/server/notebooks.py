"""Notebooks made from templates that load a finished job's results ("Open in notebook")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nnp_lab._atomic import atomic_write_text
from nnp_lab.errors import InputError

FOLDER = "nnp-lab-notebooks"


def _relative(result: dict[str, Any]) -> dict[str, Any]:
    """Result paths as seen from the notebook folder (kernels start in the notebook's
    folder): ``run/model.pt`` → ``../run/model.pt``."""
    out = dict(result)
    for key in (
        "model",
        "metrics",
        "committee",
        "dataset",
        "record",
        "workdir",
        "result",
        "trajectory",
    ):
        if isinstance(out.get(key), str):
            out[key] = str(Path("..") / out[key])
    return out


def _cells(job: dict[str, Any]) -> list[Any]:
    kind, result = job["kind"], _relative(job["result"] or {})
    spec = job["spec"]
    title = new_markdown_cell(
        f"# {job.get('name') or kind} — job `{job['id']}`\n\n"
        f"Made by nnp-lab from the finished `{kind}` job (its full spec is in the job list "
        f"of the NNP Lab sidebar and in `GET /nnp-lab/api/jobs/{job['id']}`).\n\n"
        f"Inputs: `{json.dumps({k: v for k, v in spec.items() if isinstance(v, str)})}`"
    )
    setup = new_code_cell("import matplotlib.pyplot as plt\nimport xarray as xr\n\nimport nnp_lab")
    if kind == "train":
        model, metrics = result["model"], result["metrics"]
        parity = str(Path(model).parent / "test_parity.nc")
        return [
            title,
            setup,
            new_code_cell(
                f"pot = nnp_lab.load({model!r})\nprint(pot.species, pot.metadata.get('test_metrics'))"
            ),
            new_code_cell(
                f"history = xr.open_dataset({metrics!r}).load()\n"
                "fig, ax = plt.subplots()\n"
                "history['val_force_mae'].plot(ax=ax, label='validation force MAE')\n"
                "ax.set_yscale('log'); ax.legend()\n"
                "print('final validation force MAE (meV/Å):', float(history['val_force_mae'][-1]))"
            ),
            new_code_cell(
                f"from pathlib import Path\nif Path({parity!r}).exists():\n"
                f"    parity = xr.open_dataset({parity!r}).load()\n"
                "    print({k: parity.attrs[k] for k in ('energy_mae', 'force_mae')})"
            ),
            new_code_cell(
                "from nnp_lab.widgets import TrainingMonitor\n\n"
                f"TrainingMonitor(metrics={metrics!r})"
            ),
        ]
    if kind == "committee_train":
        return [
            title,
            setup,
            new_code_cell(
                "from nnp_lab.models.committee import Committee\n"
                f"committee = Committee.load({result['committee']!r})\n"
                "print(committee.describe())\n"
                f"print({result.get('calibration')!r})"
            ),
        ]
    if kind == "dataset_build":
        return [
            title,
            setup,
            new_code_cell(
                f"data = nnp_lab.Dataset.load({result['dataset']!r})\nprint(data)\ndata.summary()"
            ),
            new_code_cell(
                "from nnp_lab.widgets import DatasetBrowser\n\nDatasetBrowser(data)  # click a row"
            ),
        ]
    if kind == "active_learn":
        return [
            title,
            setup,
            new_code_cell(
                f"log = xr.open_dataset({result['record']!r}).load()\n"
                "fig, ax = plt.subplots()\n"
                "ax.plot(log['n_labels'], log['val_force_rmse'], 'o-')\n"
                "ax.set_xlabel('labels'); ax.set_ylabel('validation force RMSE (meV/Å)')\n"
                "log[['n_labels', 'candidates', 'selected', 'val_force_rmse']].to_dataframe()"
            ),
            new_code_cell(
                "from nnp_lab.widgets import ActiveLearningDashboard\n\n"
                f"ActiveLearningDashboard({result['workdir']!r})"
            ),
        ]
    if kind == "crystal_growth":
        return [
            title,
            setup,
            new_code_cell(
                f"growth = xr.open_dataset({result['result']!r}).load()\n"
                "fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))\n"
                "growth['island_density'].plot(ax=a, x='coverage')\n"
                "growth['roughness'].plot(ax=b, x='coverage')\n"
                "growth[['coverage', 'islands', 'island_density', 'roughness']].to_dataframe()"
            ),
            new_code_cell(
                "from nnp_lab.widgets import CrystalGrowthView\n\n"
                "CrystalGrowthView(growth, color_by='layer')  # move the slider through time"
            ),
        ]
    if kind == "pimd":
        return [
            title,
            setup,
            new_code_cell(
                f"pimd = xr.open_dataset({result['result']!r}).load()\n"
                "fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))\n"
                "pimd['energy_virial'].plot(ax=a, x='time', label='centroid virial')\n"
                "pimd['energy_primitive'].plot(ax=a, x='time', label='primitive')\n"
                "a.legend()\n"
                "pimd['radius_of_gyration'].plot.line(ax=b, x='time', add_legend=False)\n"
                "pimd[['potential', 'kinetic_virial', 'energy_virial']].mean()"
            ),
        ]
    raise InputError(f"no notebook template for jobs of kind {kind!r}")


def job_notebook(job: dict[str, Any], root: Path) -> str:
    """Write a notebook for a completed job under ``root/nnp-lab-notebooks/``; returns its
    path relative to ``root``."""
    if job["status"] != "completed":
        raise InputError(f"job {job['id']} is {job['status']}; notebooks open completed jobs")
    nb = new_notebook(cells=_cells(job))
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    folder = root / FOLDER
    folder.mkdir(exist_ok=True)
    stem = (job.get("name") or job["kind"]).replace("/", "_").replace(" ", "_")
    path = folder / f"{stem}-{job['id']}.ipynb"
    atomic_write_text(path, nbformat.writes(nb))
    return str(path.relative_to(root))
