"""Committee predictions on datasets, and calibration of the committee spread.

The committee's force spread (per atom: ‖std over members‖ of the force vector) ranks
structures by how little the members agree; calibration rescales it so that it also
predicts the size of the actual error: ``s = sqrt(mean(|ΔF|²) / mean(spread²))`` over the
validation atoms, so that after scaling the mean predicted variance equals the mean
squared error (the maximum-likelihood scale of a Gaussian error model whose width is
proportional to the spread, up to weighting). How well the spread *ranks* errors is
reported as Spearman's ρ between the per-structure maximum spread and the per-structure
maximum force error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from nnp_lab._atomic import atomic_write_text
from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import InputError


def committee_predictions(committee: Any, data: Dataset, batch_size: int = 32) -> xr.Dataset:
    """Committee mean and spread for every structure of ``data`` (labels not needed).

    Returns an ``xarray.Dataset`` with per-structure ``energy_mean``, ``energy_std`` (eV),
    ``max_force_spread`` (eV/Å) and per-atom ``forces_mean`` (eV/Å), ``forces_std``
    (per component) and ``force_spread`` (‖std‖), in the dataset's flat atom layout.
    """
    if len(data) == 0:
        raise InputError("no structures to predict")
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("energy_mean", "energy_std", "forces_mean", "forces_std", "spread")
    }
    committee.eval()
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        batch = data.to_batch(idx, dtype=committee.dtype, device=committee.device)
        out = committee(batch, forces=True)
        parts["energy_mean"].append(out["energy_mean"].detach().cpu().numpy())
        parts["energy_std"].append(out["energy_std"].detach().cpu().numpy())
        parts["forces_mean"].append(out["forces_mean"].detach().cpu().numpy().astype(float))
        parts["forces_std"].append(out["forces_std"].detach().cpu().numpy().astype(float))
        parts["spread"].append(out["force_spread"].detach().cpu().numpy().astype(float))
    spread = np.concatenate(parts["spread"])
    ptr = data.ptr
    max_spread = np.array(
        [
            spread[ptr[k] : ptr[k + 1]].max() if ptr[k + 1] > ptr[k] else 0.0
            for k in range(len(data))
        ]
    )
    res = xr.Dataset(
        {
            "energy_mean": ("structure", np.concatenate(parts["energy_mean"])),
            "energy_std": ("structure", np.concatenate(parts["energy_std"])),
            "max_force_spread": ("structure", max_spread),
            "forces_mean": (("atom", "xyz"), np.concatenate(parts["forces_mean"])),
            "forces_std": (("atom", "xyz"), np.concatenate(parts["forces_std"])),
            "force_spread": ("atom", spread),
            "n_atoms": ("structure", data.n_atoms),
        }
    )
    for name in ("energy_mean", "energy_std"):
        res[name].attrs["units"] = "eV"
    for name in ("max_force_spread", "forces_mean", "forces_std", "force_spread"):
        res[name].attrs["units"] = "eV/Å"
    return res


@dataclass
class Calibration:
    """Scale factors that turn the raw committee spread into a predicted error.

    Attributes:
        force_scale: multiplies the per-atom force spread (1 = uncalibrated).
        energy_scale: multiplies the energy std.
        spearman_max: Spearman ρ, per structure, between the max calibrated force spread
            and the max force error on the calibration data.
        spearman_rms: the same for the RMS over atoms.
        coverage_1sigma: fraction of force components with |error| ≤ calibrated std
            (a Gaussian would give 0.683).
        n_structures: structures the calibration was fitted on.
    """

    force_scale: float = 1.0
    energy_scale: float = 1.0
    spearman_max: float = float("nan")
    spearman_rms: float = float("nan")
    coverage_1sigma: float = float("nan")
    n_structures: int = 0

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON, atomically."""
        return atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        return cls(**json.loads(Path(path).read_text()))


def calibrate(committee: Any, data: Dataset, batch_size: int = 32) -> Calibration:
    """Fit the spread scales on labelled ``data`` (a validation set) and report ρ."""
    data = data.labelled()
    if len(data) < 2:
        raise InputError("calibration needs at least two labelled structures")
    pred = committee_predictions(committee, data, batch_size=batch_size)
    ref_f = np.asarray(data.xr["forces"].values, dtype=float)
    ok_atoms = np.isfinite(ref_f).all(axis=1)
    err = pred["forces_mean"].values - ref_f
    std = pred["forces_std"].values
    force_scale = 1.0
    if ok_atoms.any():
        msd = float(np.mean(std[ok_atoms] ** 2))
        mse = float(np.mean(err[ok_atoms] ** 2))
        force_scale = float(np.sqrt(mse / msd)) if msd > 0 else 1.0
    n = data.n_atoms
    de = (pred["energy_mean"].values - data.energy) / n
    ds = pred["energy_std"].values / n
    energy_scale = float(np.sqrt(np.mean(de**2) / np.mean(ds**2))) if np.mean(ds**2) > 0 else 1.0

    ptr = data.ptr
    err_norm = np.linalg.norm(err, axis=1)
    spread = pred["force_spread"].values * force_scale
    max_err, rms_err, max_sp, rms_sp = [], [], [], []
    for k in range(len(data)):
        sl = slice(ptr[k], ptr[k + 1])
        good = ok_atoms[sl]
        if not good.any():
            continue
        max_err.append(err_norm[sl][good].max())
        rms_err.append(np.sqrt(np.mean(err_norm[sl][good] ** 2)))
        max_sp.append(spread[sl][good].max())
        rms_sp.append(np.sqrt(np.mean(spread[sl][good] ** 2)))
    rho_max = _spearman(max_sp, max_err)
    rho_rms = _spearman(rms_sp, rms_err)
    within = np.abs(err[ok_atoms]) <= std[ok_atoms] * force_scale
    return Calibration(
        force_scale=force_scale,
        energy_scale=energy_scale,
        spearman_max=rho_max,
        spearman_rms=rho_rms,
        coverage_1sigma=float(within.mean()) if within.size else float("nan"),
        n_structures=len(data),
    )


def _spearman(x: list[float], y: list[float]) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def error_vs_spread(
    committee: Any, data: Dataset, calibration: Calibration | None = None
) -> xr.Dataset:
    """Per-structure true force errors next to the (calibrated) spread, for plots.

    Variables over ``structure``: ``max_force_spread``, ``max_force_error``,
    ``rms_force_error`` (eV/Å), ``energy_error`` (eV/atom), ``energy_std`` (eV/atom).
    """
    data = data.labelled()
    cal = calibration or Calibration()
    pred = committee_predictions(committee, data)
    err = np.linalg.norm(pred["forces_mean"].values - data.xr["forces"].values, axis=1)
    ptr = data.ptr
    max_err = np.array([err[ptr[k] : ptr[k + 1]].max() for k in range(len(data))])
    rms_err = np.array([np.sqrt(np.mean(err[ptr[k] : ptr[k + 1]] ** 2)) for k in range(len(data))])
    n = data.n_atoms
    out = xr.Dataset(
        {
            "max_force_spread": ("structure", pred["max_force_spread"].values * cal.force_scale),
            "max_force_error": ("structure", max_err),
            "rms_force_error": ("structure", rms_err),
            "energy_error": ("structure", (pred["energy_mean"].values - data.energy) / n),
            "energy_std": ("structure", pred["energy_std"].values * cal.energy_scale / n),
        }
    )
    out.attrs["spearman_max"] = _spearman(
        list(out["max_force_spread"].values), list(out["max_force_error"].values)
    )
    for v in ("max_force_spread", "max_force_error", "rms_force_error"):
        out[v].attrs["units"] = "eV/Å"
    for v in ("energy_error", "energy_std"):
        out[v].attrs["units"] = "eV/atom"
    return out
