"""Reader for the ANI family of HDF5 data files (ANI-1, ANI-1x, ANI-2x / TorchANI layouts).

Layouts understood (the tree is walked; any group holding ``coordinates`` is a conformer
group):

(a) ANI-1x release (``ani1x-release.h5``): one group per formula with ``atomic_numbers``
    (N,), ``coordinates`` (M, N, 3) Å, ``wb97x_dz.energy`` (M,) Ha, ``wb97x_dz.forces``
    (M, N, 3) Ha/Å and other levels (``ccsd(t)_cbs.energy``, ...) with NaN where missing;
(b) TorchANI / ANI-2x: groups by atom count (``"010"``) with ``species`` (M, N) atomic
    numbers (entries <= 0 are padding), ``coordinates``, ``energies`` and optional
    ``forces``;
(c) original ANI-1 (``ani_gdb_s01.h5``): nested groups with ``species`` (N,) element
    symbols as byte strings, ``coordinates`` and ``energies``.

Only the arrays needed are read (energies of a group first, then the coordinate/force rows
of the conformers kept), so ``max_conformers`` on a multi-GB file reads little.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers as symbol_to_z
from ase.units import Hartree, kcal, mol

from nnp_lab.errors import FileFormatError, InputError

if TYPE_CHECKING:
    from nnp_lab.data.dataset import Dataset

DEFAULT_ENERGY_KEYS = ("wb97x_dz.energy", "energies", "energy")
SPECIES_KEYS = ("atomic_numbers", "species")
ENERGY_UNITS = {"hartree": Hartree, "ha": Hartree, "ev": 1.0, "kcal/mol": kcal / mol}
EXPECTED = (
    "an ANI HDF5 file: groups holding 'coordinates' (M, N, 3) plus 'atomic_numbers' (N,) "
    "(ANI-1x release), 'species' (M, N) ints (TorchANI/ANI-2x) or 'species' (N,) element "
    "symbols (ANI-1), and an energy dataset such as 'wb97x_dz.energy' or 'energies'"
)


def _conformer_groups(f: Any) -> list[Any]:
    import h5py

    groups: list[Any] = []

    def visit(_name: str, obj: Any) -> None:
        if (
            isinstance(obj, h5py.Group)
            and isinstance(obj.get("coordinates"), h5py.Dataset)
            and any(isinstance(obj.get(k), h5py.Dataset) for k in SPECIES_KEYS)
        ):
            groups.append(obj)

    if isinstance(f.get("coordinates"), h5py.Dataset):
        visit("/", f)
    f.visititems(visit)
    return groups


def _species(group: Any) -> np.ndarray:
    """Atomic numbers, shape (N,) or (M, N); <= 0 marks padding."""
    key = "atomic_numbers" if "atomic_numbers" in group else "species"
    raw = group[key][()]
    arr = np.asarray(raw)
    if arr.dtype.kind in ("S", "O", "U"):
        symbols = [s.decode() if isinstance(s, bytes) else str(s) for s in arr.ravel()]
        try:
            z = np.array([symbol_to_z[s.strip()] for s in symbols], dtype=np.int64)
        except KeyError as exc:
            raise FileFormatError(
                f"group {group.name}: unknown element symbol {exc.args[0]!r} in '{key}'"
            ) from None
        return z.reshape(arr.shape)
    if arr.dtype.kind not in ("i", "u"):
        raise FileFormatError(
            f"group {group.name}: '{key}' has dtype {arr.dtype}, expected atomic numbers "
            "(integers) or element symbols"
        )
    return arr.astype(np.int64)


def _pick(group: Any, explicit: str | None, defaults: tuple[str, ...]) -> str | None:
    if explicit is not None:
        return explicit if explicit in group else None
    return next((k for k in defaults if k in group), None)


def _forces_key_for(energy_key: str) -> str:
    if energy_key.endswith(".energy"):
        return energy_key[: -len("energy")] + "forces"
    return "forces"


def read_ani_h5(
    path: str | os.PathLike,
    energy_key: str | None = None,
    forces_key: str | None = None,
    energy_unit: str = "hartree",
    max_conformers: int | None = None,
    skip_missing: bool = True,
) -> Dataset:
    """Read an ANI-1 / ANI-1x / ANI-2x (TorchANI) HDF5 file into a :class:`Dataset`.

    - ``energy_key``: dataset name of the energies; default ``"wb97x_dz.energy"`` when a group
      has it, else ``"energies"``/``"energy"``. ``forces_key``: default inferred from the
      energy key (``"<level>.energy"`` → ``"<level>.forces"``, otherwise ``"forces"``);
      conformers of a group without forces get NaN forces.
    - ``energy_unit``: unit of the stored energies (``"hartree"``, ``"ev"``, ``"kcal/mol"``);
      forces are taken as that unit per Å. Labels are converted to eV and eV/Å.
    - Conformers whose energy is NaN (e.g. ``ccsd(t)_cbs.energy`` where not computed) and
      groups without the energy key are skipped when ``skip_missing`` (a warning is issued
      and the counts are stored in the dataset's attrs ``skipped_missing_energy`` and
      ``skipped_groups_without_energy``); with ``skip_missing=False`` they are kept as
      ``"unlabelled"`` structures (counted in ``unlabelled_missing_energy``).
    - ``method`` per structure is the energy key, ``source`` the group path; the conformer
      index within its group is ``info_conformer``.

    Raises :class:`FileFormatError` for a file that is not HDF5 or has no ANI groups, or
    when an explicitly requested key exists in no group.
    """
    import h5py

    from nnp_lab.data.dataset import Dataset

    path = Path(path)
    unit_key = str(energy_unit).lower()
    if unit_key not in ENERGY_UNITS:
        raise InputError(
            f"unknown energy_unit {energy_unit!r}; choose one of {sorted(set(ENERGY_UNITS))}"
        )
    factor = ENERGY_UNITS[unit_key]
    if max_conformers is not None and (isinstance(max_conformers, bool) or int(max_conformers) < 1):
        raise InputError(f"max_conformers must be >= 1 or None, got {max_conformers}")
    if not path.exists():
        raise FileFormatError(f"file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{path} is not an HDF5 file ({exc}); expected {EXPECTED}") from None

    structures: list[Atoms] = []
    skipped_nan = 0
    skipped_groups: list[str] = []
    energy_keys_used: set[str] = set()
    forces_keys_used: set[str] = set()
    with f:
        groups = _conformer_groups(f)
        if not groups:
            raise FileFormatError(f"{path} has no ANI conformer groups; expected {EXPECTED}")
        for group in groups:
            if max_conformers is not None and len(structures) >= max_conformers:
                break
            e_key = _pick(group, energy_key, DEFAULT_ENERGY_KEYS)
            coords_ds = group["coordinates"]
            if coords_ds.ndim != 3 or coords_ds.shape[2] != 3:
                raise FileFormatError(
                    f"group {group.name}: 'coordinates' has shape {coords_ds.shape}, "
                    "expected (conformers, atoms, 3)"
                )
            n_conf, n_at = coords_ds.shape[0], coords_ds.shape[1]
            if e_key is None:
                if skip_missing:
                    skipped_groups.append(group.name)
                    continue
                energies = np.full(n_conf, np.nan)
            else:
                energies = np.asarray(group[e_key][()], dtype=np.float64).reshape(-1)
                if energies.shape[0] != n_conf:
                    raise FileFormatError(
                        f"group {group.name}: '{e_key}' has {energies.shape[0]} values but "
                        f"'coordinates' has {n_conf} conformers"
                    )
                energy_keys_used.add(e_key)
            keep = np.arange(n_conf)
            if skip_missing:
                finite = np.isfinite(energies)
                skipped_nan += int((~finite).sum())
                keep = keep[finite]
            if max_conformers is not None:
                keep = keep[: int(max_conformers) - len(structures)]
            if keep.size == 0:
                continue
            rows = slice(0, int(keep[-1]) + 1)
            coords = np.asarray(coords_ds[rows], dtype=np.float64)[keep]
            f_key = forces_key
            if f_key is None:
                # forces of the same level of theory as the energy, never another level
                f_key = _forces_key_for(e_key) if e_key is not None else "forces"
            forces = None
            if f_key in group:
                forces_ds = group[f_key]
                if forces_ds.shape != coords_ds.shape:
                    raise FileFormatError(
                        f"group {group.name}: '{f_key}' has shape {forces_ds.shape}, expected "
                        f"{coords_ds.shape} like 'coordinates'"
                    )
                forces = np.asarray(forces_ds[rows], dtype=np.float64)[keep] * factor
                forces_keys_used.add(f_key)
            species = _species(group)
            if species.ndim == 1 and species.shape[0] != n_at:
                raise FileFormatError(
                    f"group {group.name}: {species.shape[0]} species but {n_at} atoms per conformer"
                )
            if species.ndim == 2 and species.shape != (n_conf, n_at):
                raise FileFormatError(
                    f"group {group.name}: 'species' has shape {species.shape}, expected "
                    f"({n_conf}, {n_at})"
                )
            for row, c in enumerate(keep):
                z = species if species.ndim == 1 else species[c]
                real = z > 0
                pos = coords[row][real]
                if not np.isfinite(pos).all():
                    raise FileFormatError(
                        f"group {group.name} conformer {int(c)}: coordinates contain NaN/inf"
                    )
                atoms = Atoms(numbers=z[real], positions=pos)
                e = float(energies[c]) * factor
                atoms.info["source"] = group.name
                atoms.info["conformer"] = int(c)
                atoms.info["method"] = e_key or ""
                if np.isfinite(e):
                    results: dict[str, Any] = {"energy": e, "free_energy": e}
                    if forces is not None and np.isfinite(forces[row][real]).all():
                        results["forces"] = forces[row][real]
                    atoms.calc = SinglePointCalculator(atoms, **results)
                    atoms.info["status"] = "ok"
                else:
                    atoms.info["status"] = "unlabelled"
                structures.append(atoms)
    if energy_key is not None and not energy_keys_used:
        raise FileFormatError(f"no group of {path} has the energy dataset {energy_key!r}")
    if forces_key is not None and not forces_keys_used:
        raise FileFormatError(f"no group of {path} has the forces dataset {forces_key!r}")
    if skipped_nan or skipped_groups:
        warnings.warn(
            f"read_ani_h5({path.name}): skipped {skipped_nan} conformer(s) with NaN energy and "
            f"{len(skipped_groups)} group(s) without an energy dataset "
            f"(energy_key={energy_key!r}); see the dataset attrs",
            stacklevel=2,
        )
    if not structures:
        raise FileFormatError(
            f"{path}: no conformers with an energy were found (energy_key={energy_key!r}, "
            f"{skipped_nan} NaN energies skipped, {len(skipped_groups)} groups without it)"
        )
    ds = Dataset.from_atoms(structures, validate=False)
    attrs = ds.xr.attrs
    attrs["source_file"] = str(path)
    attrs["energy_key"] = ",".join(sorted(energy_keys_used))
    attrs["forces_key"] = ",".join(sorted(forces_keys_used))
    attrs["energy_unit_in_file"] = unit_key
    attrs["skipped_missing_energy"] = int(skipped_nan)
    attrs["skipped_groups_without_energy"] = len(skipped_groups)
    attrs["unlabelled_missing_energy"] = int((ds.status == "unlabelled").sum())
    return ds
