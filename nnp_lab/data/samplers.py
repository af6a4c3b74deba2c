"""Geometry generators for reference datasets, each reproducible from a ``seed``.

Every sampler returns ``list[ase.Atoms]`` whose ``atoms.info["source"]`` says how the frame
was made (sampler, parameters, seed, frame index); the input structure is never modified.
Pass the list to :meth:`nnp_lab.data.dataset.Dataset.from_atoms`.

- :func:`rattle`: independent Gaussian displacements.
- :func:`md_snapshots`: Langevin MD driven by a reference (frames carry its energy/forces).
- :func:`normal_mode_samples`: classical Boltzmann sampling of the harmonic normal modes.
- :func:`dimer_scan`: rigid scan of the separation of two fragments.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from nnp_lab.errors import InputError

MIN_DISTANCE = 0.1  # Å, as in nnp_lab.data.structures


def _check_atoms(atoms: Atoms, what: str = "atoms") -> None:
    if not isinstance(atoms, Atoms):
        raise InputError(f"{what} must be ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise InputError(f"{what} has no atoms")
    if not np.isfinite(atoms.positions).all():
        raise InputError(f"{what} has NaN or inf positions")


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InputError(f"{name} must be an integer >= 1, got {n!r}")
    if n < 1:
        raise InputError(f"{name} must be >= 1, got {n}")
    return int(n)


def _clean_copy(atoms: Atoms) -> Atoms:
    """Copy without calculator and without label bookkeeping in ``info``."""
    out = atoms.copy()
    out.calc = None
    for key in ("status", "error", "method", "source"):
        out.info.pop(key, None)
    return out


def _frame_rng(seed: int, frame: int) -> np.random.Generator:
    """A generator for one frame: frame ``k`` is the same whatever ``n`` is."""
    return np.random.default_rng([int(seed), int(frame)])


# ---------------------------------------------------------------------------- rattle
def rattle(atoms: Atoms, n: int, stdev: float = 0.05, seed: int = 0) -> list[Atoms]:
    """``n`` copies of ``atoms`` with independent Gaussian displacements (std ``stdev`` Å).

    Frame ``k`` depends only on ``(seed, k)``, so asking for more frames keeps the first ones.
    """
    _check_atoms(atoms)
    n = _check_count(n, "n")
    if not np.isfinite(stdev) or stdev < 0:
        raise InputError(f"stdev must be a finite number >= 0 Å, got {stdev}")
    frames = []
    for k in range(n):
        frame = _clean_copy(atoms)
        frame.positions = atoms.positions + _frame_rng(seed, k).normal(0.0, stdev, (len(atoms), 3))
        frame.info["source"] = f"rattle(stdev={stdev:g} Å, seed={seed}, frame={k})"
        frames.append(frame)
    return frames


# ---------------------------------------------------------------------------- MD
def _as_calculator(calculator: Any) -> tuple[Calculator, str | None]:
    from nnp_lab.data.labelers import Labeler

    if isinstance(calculator, Labeler):
        return calculator.as_calculator(), calculator.method
    if isinstance(calculator, Calculator) or hasattr(calculator, "get_potential_energy"):
        return calculator, None
    raise InputError(
        f"calculator must be an ASE calculator or an nnp-lab Labeler, got {type(calculator).__name__}"
    )


def md_snapshots(
    atoms: Atoms,
    calculator: Any,
    temperature_K: float | Sequence[float],
    n_frames: int,
    interval: int = 10,
    timestep_fs: float = 1.0,
    friction: float = 0.01,
    seed: int = 0,
    equilibration_steps: int = 0,
) -> list[Atoms]:
    """Frames from Langevin MD (``ase.md.langevin.Langevin``) driven by ``calculator``.

    ``calculator`` is an ASE calculator or a :class:`~nnp_lab.data.labelers.Labeler` (its
    :meth:`~nnp_lab.data.labelers.Labeler.as_calculator` is used). Velocities start from a
    Maxwell–Boltzmann distribution (centre-of-mass motion removed) drawn from ``seed``; the
    Langevin noise comes from the same seed, so a run is reproducible. ``friction`` is in
    1/fs. ``temperature_K`` may be a list: a linear ramp from the first to the last value
    over the frames (equilibration runs at the first value).

    After ``equilibration_steps``, a frame is taken every ``interval`` steps. Each frame
    carries the reference energy/forces (and stress for 3D-periodic cells when available)
    from the MD step in a ``SinglePointCalculator``, so the dataset gets them without a
    second calculation; ``info["method"]`` is the labeler's method when a Labeler was
    given (otherwise ``"ASE/<calculator class>"``). ``info`` also holds ``md_step`` and
    ``md_temperature_K``.
    """
    from ase.md import velocitydistribution as vd
    from ase.md.langevin import Langevin

    _check_atoms(atoms)
    n_frames = _check_count(n_frames, "n_frames")
    interval = _check_count(interval, "interval")
    temps = np.atleast_1d(np.asarray(temperature_K, dtype=np.float64))
    if temps.ndim != 1 or temps.size == 0 or not np.isfinite(temps).all() or (temps < 0).any():
        raise InputError(
            f"temperature_K must be a number or a list of numbers >= 0 K, got {temperature_K!r}"
        )
    if not np.isfinite(timestep_fs) or timestep_fs <= 0:
        raise InputError(f"timestep_fs must be > 0 fs, got {timestep_fs}")
    if not np.isfinite(friction) or friction < 0:
        raise InputError(f"friction must be >= 0 (1/fs), got {friction}")
    if isinstance(equilibration_steps, bool) or int(equilibration_steps) < 0:
        raise InputError(f"equilibration_steps must be >= 0, got {equilibration_steps}")
    calc, labeler_method = _as_calculator(calculator)
    method = labeler_method or f"ASE/{type(calc).__name__}"

    def temperature_of(frame: int) -> float:
        if temps.size == 1:
            return float(temps[0])
        return float(np.interp(frame, np.linspace(0, max(n_frames - 1, 1), temps.size), temps))

    rng = np.random.default_rng(int(seed))
    system = _clean_copy(atoms)
    system.calc = calc
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(system, float(temps[0]), rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(system, temperature_K=float(temps[0]), rng=rng)
    vd.Stationary(system)
    dyn = Langevin(
        system,
        timestep=timestep_fs * units.fs,
        temperature_K=float(temps[0]),
        friction=friction / units.fs,
        fixcm=False,  # ASE >= 3.28: fixcm=True does not sample NVT exactly; COM may diffuse
        rng=rng,
    )
    if equilibration_steps:
        dyn.run(int(equilibration_steps))
    desc = (
        f"{temps[0]:g} K" if temps.size == 1 else "ramp " + "→".join(f"{t:g}" for t in temps) + " K"
    )
    frames = []
    step = int(equilibration_steps)
    for k in range(n_frames):
        t_k = temperature_of(k)
        dyn.set_temperature(temperature_K=t_k)
        dyn.run(interval)
        step += interval
        frame = system.copy()
        frame.calc = None
        # Results of the last MD step, for exactly these positions (no second calculation).
        energy = system.get_potential_energy()
        forces = system.get_forces()
        results: dict[str, Any] = {"energy": energy, "forces": np.array(forces)}
        if system.pbc.all() and "stress" in calc.results:
            results["stress"] = np.array(calc.results["stress"])
        frame.calc = SinglePointCalculator(frame, **results)
        frame.info["method"] = method
        frame.info["md_step"] = step
        frame.info["md_temperature_K"] = t_k
        frame.info["source"] = (
            f"md(langevin {desc}, dt={timestep_fs:g} fs, friction={friction:g}/fs, "
            f"seed={seed}, step={step})"
        )
        frames.append(frame)
    system.calc = None
    return frames


# ---------------------------------------------------------------------------- normal modes
def _rigid_body_basis(atoms: Atoms) -> np.ndarray:
    """Orthonormal mass-weighted translations (and rotations for non-periodic systems)."""
    m = atoms.get_masses()
    sq = np.sqrt(m)
    n = len(atoms)
    vecs = []
    for axis in range(3):
        v = np.zeros((n, 3))
        v[:, axis] = sq
        vecs.append(v.ravel())
    if not atoms.pbc.any():
        com = atoms.get_center_of_mass()
        r = atoms.positions - com
        for axis in range(3):
            e = np.zeros(3)
            e[axis] = 1.0
            vecs.append((np.cross(e, r) * sq[:, None]).ravel())
    mat = np.array(vecs).T  # (3N, k)
    u, s, _ = np.linalg.svd(mat, full_matrices=False)
    rank = int((s > 1e-6 * s.max()).sum())  # 5 for linear molecules, 6 otherwise
    return u[:, :rank]


def normal_modes(
    atoms: Atoms, calculator: Any, delta: float = 0.01
) -> tuple[np.ndarray, np.ndarray, int]:
    """Harmonic analysis: ``(omega2, modes, n_rigid)``.

    ``omega2`` (eV/(Å²·amu)) are the eigenvalues of the mass-weighted Hessian with the
    rigid-body motions (3 translations, and 3 rotations — 2 for linear molecules — when not
    periodic) projected out; ``modes`` (3N, n_internal) the orthonormal mass-weighted
    eigenvectors. The Hessian comes from ``ase.vibrations.Vibrations`` (central differences
    with step ``delta`` Å) run in a temporary directory that is removed afterwards.
    """
    from ase.vibrations import Vibrations

    calc, _ = _as_calculator(calculator)
    system = _clean_copy(atoms)
    system.calc = calc
    with tempfile.TemporaryDirectory(prefix="nnp_lab_vib_") as tmp:
        vib = Vibrations(system, name=os.path.join(tmp, "vib"), delta=delta, nfree=2)
        vib.run()
        hessian = vib.get_vibrations().get_hessian_2d()  # eV/Å²
    system.calc = None
    hessian = 0.5 * (hessian + hessian.T)
    inv_sq = 1.0 / np.sqrt(np.repeat(system.get_masses(), 3))
    h_mw = hessian * inv_sq[:, None] * inv_sq[None, :]
    rigid = _rigid_body_basis(system)
    # Orthonormal basis of the internal (non rigid-body) space.
    q, _ = np.linalg.qr(np.hstack([rigid, np.eye(h_mw.shape[0])]))
    internal = q[:, rigid.shape[1] :]
    omega2, vecs = np.linalg.eigh(internal.T @ h_mw @ internal)
    return omega2, internal @ vecs, rigid.shape[1]


def normal_mode_samples(
    atoms: Atoms,
    calculator: Any,
    n: int,
    temperature_K: float = 300.0,
    seed: int = 0,
    delta: float = 0.01,
    quantum: bool = False,
) -> list[Atoms]:
    """``n`` Boltzmann samples of the harmonic normal modes of ``atoms`` (classical, or
    with ``quantum`` the exact quantum position distribution of each mode).

    ``atoms`` should be at a minimum of ``calculator``'s energy. In mass-weighted
    coordinates each vibrational mode ``k`` gets an independent Gaussian amplitude of
    variance ``kT/ω_k²``, so the mean harmonic energy is ``(n_modes/2) kT`` (equipartition);
    with ``quantum`` the variance is ``(ħ/2ω_k) coth(βħω_k/2)`` (zero-point spread: the
    geometries a path-integral bead visits; → ``kT/ω_k²`` when ħω ≪ kT).
    The 6 rigid-body modes (5 for linear molecules, 3 translations for periodic cells) are
    projected out; imaginary and near-zero (< 1 cm⁻¹) modes are skipped with a warning.
    Frames are unlabelled; frame ``k`` depends only on ``(seed, k)``.
    """
    _check_atoms(atoms)
    n = _check_count(n, "n")
    if not np.isfinite(temperature_K) or temperature_K < 0:
        raise InputError(f"temperature_K must be >= 0 K, got {temperature_K}")
    if not np.isfinite(delta) or delta <= 0:
        raise InputError(f"delta must be > 0 Å, got {delta}")
    omega2, modes, n_rigid = normal_modes(atoms, calculator, delta=delta)
    if omega2.size == 0:
        raise InputError(f"{len(atoms)} atom(s) have no vibrational modes to sample")
    # ħω in eV from ω² in eV/(Å² amu); 1 cm⁻¹ = 1.2398e-4 eV
    hbar_omega = units._hbar * 1e10 / np.sqrt(units._e * units._amu) * np.sqrt(np.abs(omega2))
    cm1 = hbar_omega / (units.invcm)
    imaginary = omega2 < 0
    soft = (~imaginary) & (cm1 < 1.0)
    if imaginary.any():
        warnings.warn(
            f"normal_mode_samples: skipping {int(imaginary.sum())} imaginary mode(s) "
            f"({', '.join(f'{c:.1f}i' for c in cm1[imaginary])} cm^-1); is the structure at a "
            "minimum?",
            stacklevel=2,
        )
    if soft.any():
        warnings.warn(
            f"normal_mode_samples: skipping {int(soft.sum())} near-zero mode(s) (< 1 cm^-1)",
            stacklevel=2,
        )
    keep = ~(imaginary | soft)
    if not keep.any():
        raise InputError("no real vibrational modes to sample (all imaginary or zero)")
    w2 = omega2[keep]
    vecs = modes[:, keep]
    kt = units.kB * float(temperature_K)
    sigma = np.sqrt(kt / w2)  # Å·sqrt(amu)
    if quantum:  # (ħ/2ω) coth(βħω/2) = (ħω/2) coth(ħω/2kT) / ω²
        hw = hbar_omega[keep]
        x = hw / (2 * kt) if kt > 0 else np.full_like(hw, np.inf)
        sigma = np.sqrt(0.5 * hw / np.tanh(x) / w2)
    inv_sq = 1.0 / np.sqrt(np.repeat(atoms.get_masses(), 3))
    frames = []
    for k in range(n):
        q = _frame_rng(seed, k).standard_normal(w2.size) * sigma
        disp = (inv_sq * (vecs @ q)).reshape(-1, 3)
        frame = _clean_copy(atoms)
        frame.positions = atoms.positions + disp
        frame.info["source"] = (
            f"normal_modes(T={temperature_K:g} K, {'quantum' if quantum else 'classical'}, "
            f"modes={w2.size}, rigid={n_rigid}, "
            f"seed={seed}, frame={k})"
        )
        frames.append(frame)
    return frames


# ---------------------------------------------------------------------------- dimer scan
def dimer_scan(
    dimer: Atoms,
    fragment: Sequence[int],
    distances: Sequence[float] | np.ndarray,
    pair: tuple[int, int] | None = None,
) -> list[Atoms]:
    """Rigidly translate fragment B (atoms not in ``fragment``) to set a separation.

    The line of motion joins the centres of mass of fragments A (``fragment``) and B, or the
    atoms ``pair = (i, j)`` (``i`` in A, ``j`` in B); for each value in ``distances`` (Å)
    B is moved along that line so that this distance equals the value exactly. Plain
    Cartesian distances are used (no periodic images). ``info["scan_distance"]`` holds the
    value; frames are unlabelled. Distances that put an atom of A within 0.1 Å of an atom of B
    raise :class:`InputError`.
    """
    _check_atoms(dimer, "dimer")
    n = len(dimer)
    idx = np.asarray(list(fragment), dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise InputError("fragment is empty: give the indices of the atoms of fragment A")
    if idx.min() < 0 or idx.max() >= n:
        raise InputError(f"fragment indices {idx.tolist()} out of range for {n} atoms")
    if len(set(idx.tolist())) != idx.size:
        raise InputError(f"fragment indices repeat: {idx.tolist()}")
    in_a = np.zeros(n, bool)
    in_a[idx] = True
    if in_a.all():
        raise InputError("fragment contains every atom, so fragment B is empty")
    dist = np.atleast_1d(np.asarray(distances, dtype=np.float64))
    if dist.ndim != 1 or dist.size == 0:
        raise InputError("distances must be a non-empty list of numbers (Å)")
    if not np.isfinite(dist).all() or (dist <= 0).any():
        raise InputError(f"distances must be finite and > 0 Å, got {dist.tolist()}")
    pos = dimer.positions
    if pair is None:
        masses = dimer.get_masses()
        ra = (masses[in_a, None] * pos[in_a]).sum(0) / masses[in_a].sum()
        rb = (masses[~in_a, None] * pos[~in_a]).sum(0) / masses[~in_a].sum()
        what = "centres of mass"
    else:
        i, j = (int(p) for p in pair)
        if not (0 <= i < n and 0 <= j < n):
            raise InputError(f"pair {tuple(pair)} out of range for {n} atoms")
        if not in_a[i] or in_a[j]:
            raise InputError(
                f"pair {tuple(pair)} must be (atom of fragment A, atom of fragment B); "
                f"fragment A is {idx.tolist()}"
            )
        ra, rb = pos[i], pos[j]
        what = f"atoms {i} and {j}"
    axis = rb - ra
    d0 = float(np.linalg.norm(axis))
    if d0 < 1e-8:
        raise InputError(f"the {what} coincide, so the scan direction is undefined")
    unit = axis / d0
    frames = []
    for d in dist:
        frame = _clean_copy(dimer)
        new = pos.copy()
        new[~in_a] += (d - d0) * unit
        gaps = np.linalg.norm(new[in_a][:, None, :] - new[~in_a][None, :, :], axis=-1)
        if gaps.min() < MIN_DISTANCE:
            a, b = np.unravel_index(int(np.argmin(gaps)), gaps.shape)
            raise InputError(
                f"scan distance {d:g} Å puts atoms {int(np.flatnonzero(in_a)[a])} and "
                f"{int(np.flatnonzero(~in_a)[b])} {gaps.min():.3g} Å apart (< {MIN_DISTANCE} Å)"
            )
        frame.positions = new
        frame.info["scan_distance"] = float(d)
        frame.info["source"] = f"dimer_scan({what}, d={d:g} Å)"
        frames.append(frame)
    return frames
