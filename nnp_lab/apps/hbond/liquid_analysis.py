"""H-bond statistics of liquid water from an MD trajectory, as xarray.

* **O–O radial distribution function** g(r) and running coordination number n(r), from
  vesin neighbour lists (minimum image, r < half the box): ``g(r) = ⟨pairs in the shell⟩ /
  (N (N − 1)/V · 4π r² dr)``, so an ideal gas gives 1 exactly and n(r) = 4πρ∫g r² dr.
* **H-bonds** by the Luzar–Chandler criterion (Nature 379, 55 (1996)): O_D···O_A ≤ 3.5 Å
  (the first minimum of g_OO) and the angle between O_D–H and O_D···O_A ≤ 30°. Per frame:
  H-bonds per molecule (each bond counts for donor and acceptor) and the distribution of
  bonds per molecule.
* **Lifetimes** from the population h_ij(t) of each (H, acceptor O) pair (Rapaport 1983;
  Luzar & Chandler 1996): the intermittent correlation C(t) = ⟨h(0)h(t)⟩/⟨h⟩ (bonds may
  break and re-form) and the continuous one S(t) = ⟨h(0)H(t)⟩/⟨h⟩ (H(t) = 1 while the bond
  never broke). Reported: τ_continuous = ∫S dt and τ_intermittent, the 1/e time of C.
  Both depend on the sampling interval (a bond broken between two frames is not seen):
  it is stored with them.

Molecules are the covalent O–H–H units of the first frame; a frame where any H is farther
than 1.3 Å from its oxygen (a proton moved) is counted in ``broken_oh_frames``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from nnp_lab.errors import InputError

#: experiment, ambient liquid water: X-ray diffraction, Skinner et al., J. Chem. Phys. 138,
#: 074506 (2013): first O–O peak at 2.80 Å, height 2.57; coordination to the first
#: minimum (3.36 Å) 4.3.
EXPERIMENT = {"rdf_peak_r": 2.80, "rdf_peak_g": 2.57, "rdf_min_r": 3.36, "coordination": 4.3}
LUZAR_CHANDLER = {"r_oo_max": 3.5, "angle_max": 30.0}
OH_BROKEN = 1.3  #: Å: an H this far from its oxygen has left its molecule


def _min_image(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image vectors (any cell shape; ASE's ``find_mic``), same shape as ``d``."""
    from ase.geometry import find_mic

    return find_mic(d.reshape(-1, 3), cell, pbc=True)[0].reshape(d.shape)


def water_topology(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """``(n_O, 2)``: the two hydrogens of every oxygen (nearest, minimum image).

    Raises :class:`~nnp_lab.errors.InputError` unless every H belongs to exactly one
    O within 1.3 Å and every O has exactly two (pure water)."""
    numbers = np.asarray(numbers)
    o_idx = np.nonzero(numbers == 8)[0]
    h_idx = np.nonzero(numbers == 1)[0]
    if len(o_idx) == 0 or len(h_idx) != 2 * len(o_idx) or len(o_idx) + len(h_idx) != len(numbers):
        raise InputError("not pure water: need only O and H, two H per O")
    d = _min_image(positions[h_idx][:, None, :] - positions[o_idx][None, :, :], cell)
    r = np.linalg.norm(d, axis=-1)  # (H, O)
    owner = r.argmin(axis=1)
    if (r[np.arange(len(h_idx)), owner] > OH_BROKEN).any():
        raise InputError(f"a hydrogen has no oxygen within {OH_BROKEN} Å in the first frame")
    counts = np.bincount(owner, minlength=len(o_idx))
    if (counts != 2).any():
        raise InputError("every oxygen needs exactly two hydrogens in the first frame")
    order = np.argsort(owner, kind="stable")
    return h_idx[order].reshape(-1, 2)


def _box(cell: np.ndarray) -> float:
    """Half the smallest distance between opposite faces (the largest minimum-image r):
    face spacings are 1/|b_i| for the reciprocal vectors b_i (without 2π)."""
    from ase.cell import Cell

    return 0.5 / float(np.linalg.norm(Cell(cell).reciprocal(), axis=1).max())


def rdf(
    positions: np.ndarray,
    cell: np.ndarray,
    r_max: float | None = None,
    bin_width: float = 0.02,
) -> xr.Dataset:
    """g(r) and n(r) of one kind of particle over frames ``positions`` (frame, particle, xyz)."""
    from vesin import NeighborList

    positions = np.asarray(positions, dtype=float)
    if positions.ndim == 2:
        positions = positions[None]
    n_frames, n = positions.shape[:2]
    if n < 2:
        raise InputError("an RDF needs at least two particles")
    half = _box(cell)
    r_max = min(r_max or half, half)
    edges = np.arange(0.0, r_max + 1e-9, bin_width)
    counts = np.zeros(len(edges) - 1)
    nl = NeighborList(cutoff=float(edges[-1]), full_list=True)
    for pos in positions:
        dist = np.asarray(nl.compute(points=pos, box=cell, periodic=True, quantities="d"))
        counts += np.histogram(dist, bins=edges)[0]
    vol = abs(np.linalg.det(cell))
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = counts / (n_frames * n * (n - 1) / vol * shell)
    n_r = np.cumsum(counts) / (n_frames * n)
    r = 0.5 * (edges[1:] + edges[:-1])
    return xr.Dataset(
        {
            "g": ("r", g, {"long_name": "radial distribution function"}),
            "n": ("r", n_r, {"long_name": "running coordination number (to the bin's outer edge)"}),
        },
        coords={"r": ("r", r, {"units": "Å"})},
        attrs={"bin_width": bin_width, "frames": n_frames, "particles": n},
    )


def rdf_features(g: xr.Dataset) -> dict[str, float]:
    """First peak (position, height), first minimum after it, coordination there, and
    the coordination at experiment's first minimum (3.36 Å: comparable where a liquid
    has no clear minimum)."""
    r, gv = g["r"].values, g["g"].values
    win = (r > 2.3) & (r < 3.3)
    if not win.any():
        raise InputError("the RDF does not reach 3.3 Å: use a larger box")
    k = int(np.nonzero(win)[0][np.argmax(gv[win])])
    after = (r > r[k] + 0.2) & (r < 4.2)
    m = int(np.nonzero(after)[0][np.argmin(gv[after])]) if after.any() else k
    return {
        "rdf_peak_r": float(r[k]),
        "rdf_peak_g": float(gv[k]),
        "rdf_min_r": float(r[m]),
        "rdf_min_g": float(gv[m]),
        "coordination": float(g["n"].values[m]),
        "coordination_at_expt_min": float(
            g["n"].values[int(np.argmin(np.abs(r - EXPERIMENT["rdf_min_r"])))]
        ),
    }


def hbond_pairs(
    positions: np.ndarray,
    cell: np.ndarray,
    o_idx: np.ndarray,
    h_of_o: np.ndarray,
    r_oo_max: float = LUZAR_CHANDLER["r_oo_max"],
    angle_max: float = LUZAR_CHANDLER["angle_max"],
    oh_vectors: np.ndarray | None = None,
) -> np.ndarray:
    """``(n_bonds, 2)`` (H index, acceptor O index) of one frame (Luzar–Chandler).

    ``oh_vectors`` (n_O, 2, xyz): the minimum-image O→H vectors of ``h_of_o`` where the
    caller has them already."""
    from vesin import NeighborList

    i, j, d = NeighborList(cutoff=r_oo_max, full_list=True).compute(
        points=positions[o_idx], box=cell, periodic=True, quantities="ijD"
    )
    i, j, d = np.asarray(i), np.asarray(j), np.asarray(d)
    if oh_vectors is None:
        oh_vectors = _min_image(positions[h_of_o] - positions[o_idx][:, None, :], cell)
    out = []
    cos_max = np.cos(np.radians(angle_max))
    for s in range(2):
        h = h_of_o[:, s]
        vi = oh_vectors[i, s]  # O→H of every donor
        cos = np.einsum("ij,ij->i", vi, d) / (
            np.linalg.norm(vi, axis=1) * np.linalg.norm(d, axis=1)
        )
        ok = cos >= cos_max
        out.append(np.stack([h[i[ok]], o_idx[j[ok]]], axis=1))
    return np.concatenate(out)


def hbond_populations(
    traj: xr.Dataset,
    r_oo_max: float = LUZAR_CHANDLER["r_oo_max"],
    angle_max: float = LUZAR_CHANDLER["angle_max"],
) -> dict[str, Any]:
    """Per frame H-bonds: population matrix ``h`` (frame, pair) of every (H, O) pair that
    was ever bonded, ``pairs`` (pair, 2), per-molecule bond counts (frame, molecule) and
    the number of frames with a broken O–H."""
    numbers = traj["numbers"].values
    cell = traj["cell"].values
    pos = traj["positions"].values
    if pos.shape[0] == 0:
        raise InputError("the trajectory has no frames")
    h_of_o = water_topology(numbers, pos[0].astype(float), cell)
    o_idx = np.nonzero(numbers == 8)[0]
    mol_of = np.full(len(numbers), -1)
    mol_of[o_idx] = np.arange(len(o_idx))
    mol_of[h_of_o[:, 0]] = np.arange(len(o_idx))
    mol_of[h_of_o[:, 1]] = np.arange(len(o_idx))
    n_atoms = len(numbers)
    per_frame: list[np.ndarray] = []
    counts = np.zeros((len(pos), len(o_idx)), dtype=np.int16)
    broken = 0
    for f, p in enumerate(pos):
        p = p.astype(float)
        oh = _min_image(p[h_of_o] - p[o_idx][:, None, :], cell)
        broken += int((np.linalg.norm(oh, axis=-1) > OH_BROKEN).any())
        pairs = hbond_pairs(p, cell, o_idx, h_of_o, r_oo_max, angle_max, oh_vectors=oh)
        per_frame.append(pairs[:, 0] * n_atoms + pairs[:, 1])
        np.add.at(counts[f], mol_of[pairs[:, 0]], 1)
        np.add.at(counts[f], mol_of[pairs[:, 1]], 1)
    keys = np.unique(np.concatenate(per_frame)) if per_frame else np.zeros(0, np.int64)
    h = np.zeros((len(pos), len(keys)), dtype=bool)
    for f, k in enumerate(per_frame):
        h[f, np.searchsorted(keys, k)] = True
    return {
        "h": h,
        "pairs": np.stack([keys // n_atoms, keys % n_atoms], axis=1),
        "counts": counts,
        "broken_oh_frames": broken,
    }


def population_correlations(
    h: np.ndarray, max_lag: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Intermittent C(τ) and continuous S(τ), τ = 0 … max_lag frames, of populations
    ``h`` (frame, pair), averaged over all time origins with t + τ inside the record."""
    h = np.asarray(h, dtype=bool)
    n_t = h.shape[0]
    if n_t < 2 or h.sum() == 0:
        raise InputError("need at least two frames and one bond to correlate")
    max_lag = n_t - 1 if max_lag is None else min(int(max_lag), n_t - 1)
    lags = np.arange(max_lag + 1)
    # ⟨h⟩ over the origins available at each lag: Σ_p Σ_{t ≤ T-1-τ} h(t)
    per_t = h.sum(axis=1).astype(float)
    origins = np.cumsum(per_t)[n_t - 1 - lags]
    # intermittent: Σ_t h(t) h(t+τ) by FFT along time, in column blocks
    num_c = np.zeros(max_lag + 1)
    nfft = 1 << int(np.ceil(np.log2(2 * n_t)))
    for a in range(0, h.shape[1], 4096):
        blk = h[:, a : a + 4096].astype(np.float32)
        spec = np.fft.rfft(blk, n=nfft, axis=0)
        acf = np.fft.irfft(spec * np.conj(spec), n=nfft, axis=0)[: max_lag + 1]
        num_c += acf.sum(axis=1)
    c = np.rint(num_c) / origins
    # continuous: a run of L frames gives max(L - τ, 0) origins that stay bonded to τ
    pad = np.zeros((1, h.shape[1]), dtype=np.int8)
    edges = np.diff(np.concatenate([pad, h.astype(np.int8), pad]), axis=0)
    starts = np.nonzero(edges.T == 1)
    ends = np.nonzero(edges.T == -1)
    lengths = ends[1] - starts[1]  # same column order: runs alternate start/end per column
    hist = np.bincount(lengths, minlength=n_t + 2).astype(float)
    ell = np.arange(len(hist))
    tail_n = np.cumsum(hist[::-1])[::-1]  # number of runs with L ≥ ℓ
    tail_l = np.cumsum((hist * ell)[::-1])[::-1]  # Σ L over runs with L ≥ ℓ
    num_s = tail_l[lags + 1] - lags * tail_n[lags + 1]
    s = num_s / origins
    return c, s


def lifetimes(c: np.ndarray, s: np.ndarray, dt_ps: float) -> dict[str, float]:
    """τ_continuous = ∫S dt (trapezoid over the record) and τ_intermittent: C's 1/e time
    (NaN where C does not fall to 1/e within the record)."""
    t = np.arange(len(s)) * dt_ps
    tau_c = float(np.trapezoid(s, t)) if hasattr(np, "trapezoid") else float(np.trapz(s, t))
    below = np.nonzero(c <= np.exp(-1.0))[0]
    if len(below) and below[0] > 0:
        k = below[0]
        frac = (c[k - 1] - np.exp(-1.0)) / (c[k - 1] - c[k])
        tau_i = float(t[k - 1] + frac * dt_ps)
    else:
        tau_i = float("nan")
    return {
        "tau_continuous_ps": tau_c,
        "tau_intermittent_ps": tau_i,
        "s_at_end": float(s[-1]),
        "c_at_end": float(c[-1]),
    }


def analyse(
    traj: xr.Dataset,
    max_lag_ps: float = 3.0,
    r_oo_max: float = LUZAR_CHANDLER["r_oo_max"],
    angle_max: float = LUZAR_CHANDLER["angle_max"],
) -> xr.Dataset:
    """RDF, H-bonds per molecule, C(t), S(t) and lifetimes of a liquid-water trajectory
    (from :func:`~nnp_lab.apps.hbond.liquid.run_liquid_md`), with experiment in attrs."""
    numbers = traj["numbers"].values
    cell = traj["cell"].values
    pos = traj["positions"].values
    time = traj["time"].values
    if len(time) < 2:
        raise InputError("need at least two frames")
    dt = float(np.median(np.diff(time)))
    o_idx = np.nonzero(numbers == 8)[0]
    g = rdf(pos[:, o_idx], cell, r_max=8.0)
    pops = hbond_populations(traj, r_oo_max, angle_max)
    c, s = population_correlations(pops["h"], max_lag=round(max_lag_ps / dt))
    per_mol = pops["counts"].mean(axis=1)
    dist = np.stack([np.bincount(row, minlength=9)[:9] for row in pops["counts"]]).mean(0)
    dist = dist / dist.sum()
    feats = rdf_features(g)
    life = lifetimes(c, s, dt)
    out = xr.Dataset(
        {
            "g_oo": g["g"].assign_attrs(long_name="O–O radial distribution function"),
            "n_oo": g["n"].assign_attrs(long_name="O–O running coordination number"),
            "hbonds_per_molecule": ("frame_time", per_mol, {"long_name": "H-bonds per molecule"}),
            "hbond_count_fraction": (
                "n_hbonds",
                dist,
                {"long_name": "fraction of molecules with n H-bonds"},
            ),
            "c_intermittent": ("lag", c, {"long_name": "⟨h(0)h(t)⟩/⟨h⟩"}),
            "s_continuous": ("lag", s, {"long_name": "⟨h(0)H(t)⟩/⟨h⟩"}),
            "temperature": ("frame_time", traj["temperature"].values, {"units": "K"}),
            "max_force_spread": ("frame_time", traj["max_force_spread"].values, {"units": "eV/Å"}),
        },
        coords={
            "r": g["r"],
            "frame_time": ("frame_time", time, {"units": "ps"}),
            "n_hbonds": np.arange(9),
            "lag": ("lag", np.arange(len(c)) * dt, {"units": "ps"}),
        },
        attrs={
            **{k: v for k, v in feats.items()},
            **life,
            "hbonds_per_molecule_mean": float(per_mol.mean()),
            "hbond_criterion": f"Luzar-Chandler: R_OO <= {r_oo_max} A, angle(OH, OO) <= {angle_max} deg",
            "sampling_ps": dt,
            "broken_oh_frames": int(pops["broken_oh_frames"]),
            "n_molecules": len(o_idx),
            "mean_temperature_K": float(np.mean(traj["temperature"].values)),
            "experiment": json.dumps(EXPERIMENT),
            "experiment_source": "Skinner et al., J. Chem. Phys. 138, 074506 (2013), X-ray",
            "trajectory_settings": traj.attrs.get("settings", "{}"),
        },
    )
    return out


def summary(res: xr.Dataset, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The scalar results of :func:`analyse` (attrs) as a dict."""
    keys = keys or [
        "rdf_peak_r",
        "rdf_peak_g",
        "rdf_min_r",
        "coordination",
        "coordination_at_expt_min",
        "hbonds_per_molecule_mean",
        "tau_continuous_ps",
        "tau_intermittent_ps",
        "mean_temperature_K",
        "broken_oh_frames",
        "n_molecules",
        "sampling_ps",
    ]
    return {k: res.attrs[k] for k in keys if k in res.attrs}
