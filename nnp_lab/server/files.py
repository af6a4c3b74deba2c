"""Files under the server root that the lab knows: datasets, models, results; small previews."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from nnp_lab.errors import FileFormatError, InputError

KINDS = {
    "datasets": (".nc", ".h5", ".hdf5", ".extxyz", ".xyz", ".traj"),
    "models": (".pt",),
    "results": (".nc", ".json", ".png"),
    "configs": (".yaml", ".yml", ".json"),
}
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".ipynb_checkpoints", "members"}
MAX_FILES = 2000


def list_files(root: Path, kind: str, under: Path | None = None) -> list[dict[str, Any]]:
    """Files of ``kind`` below ``under`` (default: root), paths relative to ``root``."""
    if kind not in KINDS:
        raise InputError(f"unknown file kind {kind!r}; use one of {sorted(KINDS)}")
    suffixes = KINDS[kind]
    base = under or root
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(suffixes):
                continue
            path = Path(dirpath) / name
            if kind == "results" and name.endswith(".nc") and not _is_result(path):
                continue
            if kind == "datasets" and name.endswith(".nc") and _is_result(path):
                continue
            st = path.stat()
            out.append(
                {"path": str(path.relative_to(root)), "size": st.st_size, "modified": st.st_mtime}
            )
            if len(out) >= MAX_FILES:
                return out
    return out


def _is_result(path: Path) -> bool:
    """netCDF files that are records (training metrics, AL log, parity), not datasets."""
    return path.name in (
        "metrics.nc",
        "al_log.nc",
        "test_parity.nc",
        "nve.nc",
    ) or path.name.startswith(("al-efficiency", "candidates"))


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def preview(path: Path) -> dict[str, Any]:
    """A small JSON-able summary of a dataset, metrics history, AL record or model file."""
    if not path.exists():
        raise FileNotFoundError(path)
    suffix = path.suffix.lower()
    if suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf") as ds:
            if "n_atoms" in ds and "positions" in ds:
                from nnp_lab.data.dataset import Dataset

                return {"type": "dataset", "summary": _plain(Dataset(ds.load()).summary())}
            if "epoch" in ds.dims:
                return {
                    "type": "metrics",
                    "epoch": _plain(ds["epoch"].values),
                    "variables": {
                        v: _plain(ds[v].values) for v in ds.data_vars if ds[v].dims == ("epoch",)
                    },
                    "units": {v: ds[v].attrs.get("units", "") for v in ds.data_vars},
                }
            if "iteration" in ds.dims:
                return {
                    "type": "active_learning",
                    "iteration": _plain(ds["iteration"].values),
                    "variables": {
                        v: _plain(ds[v].values)
                        for v in ds.data_vars
                        if ds[v].dims == ("iteration",)
                    },
                    "attrs": _plain(dict(ds.attrs)),
                }
            return {"type": "netcdf", "variables": sorted(ds.data_vars), "dims": dict(ds.sizes)}
    if suffix == ".pt":
        from nnp_lab.models.serialization import read_tagged

        for fmt, what in (("nnp-lab-potential", "model"), ("nnp-lab-committee", "committee")):
            try:
                payload = read_tagged(path, fmt, what)
            except Exception:
                continue
            if what == "model":
                import json

                return {
                    "type": "model",
                    "config": json.loads(payload["config"]),
                    "metadata": json.loads(payload.get("metadata", "{}")),
                }
            return {"type": "committee", "members": len(payload["members"])}
        raise FileFormatError(f"{path.name} is not an nnp-lab model or committee file")
    raise FileFormatError(f"no preview for {path.suffix or 'extension-less'} files")
