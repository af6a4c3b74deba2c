"""Evaluate a potential on a dataset: parity data and MAE/RMSE per property."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import InputError


def predict_dataset(
    potential: Any,
    dataset: Dataset,
    batch_size: int = 32,
    stress: bool = False,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Predicted energies (S,), forces (A, 3) [and stress (S, 6)] for every structure."""
    energies, forces, stresses = [], [], []
    device, dtype = potential.device, potential.dtype
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="evaluate", disable=not show_progress):
        idx = range(start, min(start + batch_size, len(dataset)))
        batch = dataset.to_batch(idx, dtype=dtype, device=device)
        volume = torch.abs(torch.linalg.det(batch.cell))
        periodic = batch.pbc.all(dim=1) & (volume > 1e-6)
        want_stress = stress and bool(periodic.all())
        with torch.enable_grad():
            out = potential(batch, forces=True, stress=want_stress)
        if stress and not want_stress and bool(periodic.any()):
            sub = [int(k) for k in torch.nonzero(periodic).squeeze(-1).tolist()]
            part = dataset.to_batch([idx[k] for k in sub], dtype=dtype, device=device)
            with torch.enable_grad():
                s_part = potential(part, forces=False, stress=True)["stress"].detach().cpu().numpy()
        energies.append(out["energy"].detach().cpu().numpy())
        forces.append(out["forces"].detach().cpu().numpy())
        if stress:
            voigt = np.full((len(idx), 6), np.nan)
            if want_stress:
                s = out["stress"].detach().cpu().numpy()
                voigt[:] = s[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            elif bool(periodic.any()):
                voigt[sub] = s_part[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            stresses.append(voigt)
    res = {"energy": np.concatenate(energies), "forces": np.concatenate(forces)}
    if stress:
        res["stress"] = np.concatenate(stresses)
    return res


def _mae_rmse(err: np.ndarray) -> tuple[float, float]:
    err = err[np.isfinite(err)]
    if err.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2)))


def evaluate(
    potential: Any,
    dataset: Dataset,
    batch_size: int = 32,
    show_progress: bool = False,
) -> xr.Dataset:
    """Parity data and error metrics of ``potential`` on the labelled part of ``dataset``.

    Returns an ``xarray.Dataset`` with reference/predicted energies per structure and per
    atom, forces per atom, and attrs ``energy_mae`` / ``energy_rmse`` (meV/atom),
    ``force_mae`` / ``force_rmse`` (meV/Å) and, where stresses exist, ``stress_mae``
    (meV/Å³), plus provenance (model hash, dataset hash).
    """
    ds = dataset.labelled()
    if len(ds) == 0:
        raise InputError("the dataset has no labelled structures to evaluate on")
    has_stress = "stress" in ds.xr and np.isfinite(ds.xr["stress"].values).any()
    pred = predict_dataset(
        potential, ds, batch_size, stress=has_stress, show_progress=show_progress
    )
    n = ds.n_atoms.astype(float)
    e_ref = ds.energy
    f_ref = np.asarray(ds.xr["forces"].values)
    out = xr.Dataset(
        {
            "energy_ref": ("structure", e_ref, {"units": "eV"}),
            "energy_pred": ("structure", pred["energy"], {"units": "eV"}),
            "energy_per_atom_ref": ("structure", e_ref / n, {"units": "eV/atom"}),
            "energy_per_atom_pred": ("structure", pred["energy"] / n, {"units": "eV/atom"}),
            "n_atoms": ("structure", ds.n_atoms),
            "forces_ref": (("atom", "xyz"), f_ref, {"units": "eV/Å"}),
            "forces_pred": (("atom", "xyz"), pred["forces"], {"units": "eV/Å"}),
            "numbers": ("atom", ds.numbers),
        },
        coords={"xyz": ["x", "y", "z"]},
    )
    e_mae, e_rmse = _mae_rmse((pred["energy"] - e_ref) / n)
    f_mae, f_rmse = _mae_rmse((pred["forces"] - f_ref).reshape(-1))
    out.attrs.update(
        energy_mae=1000 * e_mae,
        energy_rmse=1000 * e_rmse,
        force_mae=1000 * f_mae,
        force_rmse=1000 * f_rmse,
        energy_units="meV/atom",
        force_units="meV/Å",
        n_structures=len(ds),
        dataset_hash=ds.content_hash(),
        model_hash=str(getattr(potential, "metadata", {}).get("model_hash", "")),
    )
    if has_stress:
        s_ref = np.asarray(ds.xr["stress"].values)
        out["stress_ref"] = (("structure", "voigt"), s_ref, {"units": "eV/Å^3"})
        out["stress_pred"] = (("structure", "voigt"), pred["stress"], {"units": "eV/Å^3"})
        s_mae, s_rmse = _mae_rmse((pred["stress"] - s_ref).reshape(-1))
        out.attrs.update(stress_mae=1000 * s_mae, stress_rmse=1000 * s_rmse, stress_units="meV/Å^3")
    return out


def metrics(parity: xr.Dataset) -> dict[str, float]:
    """The MAE/RMSE attrs of an :func:`evaluate` result as a plain dict."""
    keys = ("energy_mae", "energy_rmse", "force_mae", "force_rmse", "stress_mae", "stress_rmse")
    return {k: float(parity.attrs[k]) for k in keys if k in parity.attrs}
