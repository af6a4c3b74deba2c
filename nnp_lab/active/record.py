"""The active-learning record: one row per iteration, as an ``xarray.Dataset`` (netCDF).

Dimensions: ``iteration``; ``stage`` (explore, select, label, train) for wall times;
``uncertainty_bin`` for the histogram of the explored frames' calibrated uncertainty
(log-spaced bins from 1 meV/Å to 10 eV/Å). This is what dashboards plot: labels vs
error, uncertainty distributions by iteration, candidates seen and selected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from nnp_lab._atomic import atomic_write

STAGES = ("explore", "select", "label", "train")
BIN_EDGES = np.logspace(-3, 1, 25)  # eV/Å


@dataclass
class IterationRecord:
    """Everything recorded about one iteration (metrics in meV/atom and meV/Å)."""

    iteration: int
    n_train: int
    n_val: int
    n_labels: int
    n_failed: int
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    frames_judged: int = 0
    candidates: int = 0
    selected: int = 0
    restarts: int = 0
    uncertainties: list[float] = field(default_factory=list)
    force_scale: float = 1.0
    spearman: float = float("nan")
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_xarray(self) -> xr.Dataset:
        u = np.asarray(self.uncertainties, dtype=float)
        hist, _ = np.histogram(np.clip(u, BIN_EDGES[0], BIN_EDGES[-1]), bins=BIN_EDGES)
        nan = float("nan")
        scalars = {
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_labels": self.n_labels,
            "n_failed": self.n_failed,
            "val_energy_mae": self.val.get("energy_mae", nan),
            "val_force_mae": self.val.get("force_mae", nan),
            "val_force_rmse": self.val.get("force_rmse", nan),
            "test_energy_mae": self.test.get("energy_mae", nan),
            "test_force_mae": self.test.get("force_mae", nan),
            "test_force_rmse": self.test.get("force_rmse", nan),
            "frames_judged": self.frames_judged,
            "candidates": self.candidates,
            "selected": self.selected,
            "restarts": self.restarts,
            "uncertainty_median": float(np.median(u)) if u.size else nan,
            "uncertainty_max": float(u.max()) if u.size else nan,
            "force_scale": self.force_scale,
            "spearman_rho": self.spearman,
        }
        data = xr.Dataset(
            {k: ("iteration", [v]) for k, v in scalars.items()},
            coords={
                "iteration": [self.iteration],
                "stage": list(STAGES),
                "uncertainty_bin": 0.5 * (BIN_EDGES[1:] + BIN_EDGES[:-1]),
            },
        )
        data["uncertainty_hist"] = (("iteration", "uncertainty_bin"), hist[None, :])
        data["stage_seconds"] = (
            ("iteration", "stage"),
            np.array([[self.stage_seconds.get(s, nan) for s in STAGES]]),
        )
        return data


UNITS = {
    "val_energy_mae": "meV/atom",
    "test_energy_mae": "meV/atom",
    "val_force_mae": "meV/Å",
    "val_force_rmse": "meV/Å",
    "test_force_mae": "meV/Å",
    "test_force_rmse": "meV/Å",
    "uncertainty_median": "eV/Å",
    "uncertainty_max": "eV/Å",
    "uncertainty_bin": "eV/Å",
    "stage_seconds": "s",
}


def write_log(
    path: str | Path,
    previous: xr.Dataset | None,
    record: IterationRecord,
    **attrs: object,
) -> xr.Dataset:
    """Append (or replace) ``record``'s iteration in the log and write it atomically."""
    row = record.to_xarray()
    if previous is not None and len(previous.iteration):
        keep = previous.sel(iteration=previous.iteration < record.iteration)
        log = xr.concat([keep, row], dim="iteration") if len(keep.iteration) else row
    else:
        log = row
    for name, unit in UNITS.items():
        if name in log.variables:
            log[name].attrs["units"] = unit
    from nnp_lab import __version__

    log.attrs.update({k: v for k, v in attrs.items() if v is not None})
    log.attrs["nnp_lab_version"] = __version__
    log.attrs["title"] = "nnp-lab active-learning record"
    atomic_write(path, lambda tmp: log.to_netcdf(tmp, engine="h5netcdf"))
    return log
