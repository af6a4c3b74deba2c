"""Datasets of labelled structures, stored as an ``xarray.Dataset`` (netCDF on disk).

Layout (ragged structures stored flat, like the batches):

==============  =========================  =================================
variable        dims                       meaning
==============  =========================  =================================
numbers         (atom)                     atomic numbers
positions       (atom, xyz)                Å
forces          (atom, xyz)                eV/Å, NaN where not labelled
n_atoms         (structure)                atoms per structure
cell            (structure, cell_vector, xyz)  Å, rows are lattice vectors
pbc             (structure, xyz)           0/1 periodic flags
energy          (structure)                eV, NaN where not labelled
stress          (structure, voigt)         eV/Å³ (xx yy zz yz xz xy), NaN if absent
status          (structure)                "ok" | "failed" | "unlabelled"
error           (structure)                why a label failed ("" otherwise)
method          (structure)                reference method of the label
source          (structure)                where the geometry came from
info_<key>      (structure)                extra per-structure numbers
==============  =========================  =================================
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from nnp_lab._atomic import atomic_write
from nnp_lab.data.batch import Batch
from nnp_lab.data.structures import symbols_of, validate_atoms
from nnp_lab.errors import FileFormatError, InputError

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_UNLABELLED = "unlabelled"

REQUIRED = ("numbers", "positions", "n_atoms", "cell", "pbc", "energy", "forces", "status")
UNITS = {
    "positions": "Å",
    "forces": "eV/Å",
    "cell": "Å",
    "energy": "eV",
    "stress": "eV/Å^3",
}
VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")
NETCDF_ENGINE = "h5netcdf"


def _str_array(values: Iterable[Any]) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def _results_of(atoms: Atoms) -> dict[str, Any]:
    calc = atoms.calc
    if calc is None:
        return {}
    return dict(getattr(calc, "results", {}) or {})


class Dataset:
    """Labelled structures with ``ase.Atoms`` in and out, backed by an ``xarray.Dataset``.

    Build with :meth:`from_atoms`, :meth:`read` (netCDF, ANI HDF5 or any ``ase.io`` file)
    or the samplers in :mod:`nnp_lab.data.samplers`; label with :meth:`label`; split with
    :meth:`split`; save with :meth:`save`.
    """

    def __init__(self, data: xr.Dataset):
        missing = [v for v in REQUIRED if v not in data.variables]
        if missing:
            raise FileFormatError(
                f"not an nnp-lab dataset: variables {missing} are missing "
                f"(expected {list(REQUIRED)})"
            )
        self._data = data
        counts = np.asarray(data["n_atoms"].values, dtype=np.int64)
        if counts.sum() != data.sizes["atom"]:
            raise FileFormatError(
                f"corrupt dataset: n_atoms sums to {counts.sum()} but there are "
                f"{data.sizes['atom']} atoms"
            )
        self._ptr = np.concatenate([[0], np.cumsum(counts)])

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(
        cls,
        structures: Atoms | Iterable[Atoms],
        method: str | None = None,
        source: str | None = None,
        validate: bool = True,
    ) -> Dataset:
        """Dataset from ``ase.Atoms``; labels are taken from attached calculator results.

        Energies/forces/stress found in ``atoms.calc.results`` (e.g. from an extxyz file or
        a sampler that ran the reference) become labels, tagged with ``method`` (or
        ``atoms.info['method']``). Numeric scalars in ``atoms.info`` are kept as
        ``info_<key>`` variables.
        """
        if isinstance(structures, Atoms):
            structures = [structures]
        structures = list(structures)
        if not structures:
            raise InputError("no structures given: the dataset would be empty")
        n = len(structures)
        energy = np.full(n, np.nan)
        stress = np.full((n, 6), np.nan)
        status, methods, sources, errors = [], [], [], []
        forces = []
        info: dict[str, np.ndarray] = {}
        for k, atoms in enumerate(structures):
            if validate:
                validate_atoms(atoms, index=k)
            res = _results_of(atoms)
            f = np.full((len(atoms), 3), np.nan)
            if "energy" in res and res["energy"] is not None:
                energy[k] = float(res["energy"])
            if "forces" in res and res["forces"] is not None:
                f = np.asarray(res["forces"], dtype=np.float64).reshape(len(atoms), 3)
            if "stress" in res and res["stress"] is not None:
                s = np.asarray(res["stress"], dtype=np.float64)
                stress[k] = (
                    s
                    if s.shape == (6,)
                    else s.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
                )
            forces.append(f)
            labelled = np.isfinite(energy[k])
            status.append(atoms.info.get("status", STATUS_OK if labelled else STATUS_UNLABELLED))
            errors.append(atoms.info.get("error", ""))
            methods.append(atoms.info.get("method", method or ("file" if labelled else "")))
            sources.append(atoms.info.get("source", source or ""))
            for key, val in atoms.info.items():
                if key in ("status", "error", "method", "source"):
                    continue
                if isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(
                    val, bool
                ):
                    info.setdefault(key, np.full(n, np.nan))[k] = float(val)
        counts = np.array([len(a) for a in structures], dtype=np.int64)
        data = xr.Dataset(
            {
                "numbers": (
                    "atom",
                    np.concatenate([a.numbers for a in structures]).astype(np.int32),
                ),
                "positions": (("atom", "xyz"), np.concatenate([a.positions for a in structures])),
                "forces": (("atom", "xyz"), np.concatenate(forces)),
                "n_atoms": ("structure", counts),
                "cell": (
                    ("structure", "cell_vector", "xyz"),
                    np.stack([a.cell.array for a in structures]),
                ),
                "pbc": (
                    ("structure", "xyz"),
                    np.stack([a.pbc for a in structures]).astype(np.int8),
                ),
                "energy": ("structure", energy),
                "stress": (("structure", "voigt"), stress),
                "status": ("structure", _str_array(status)),
                "error": ("structure", _str_array(errors)),
                "method": ("structure", _str_array(methods)),
                "source": ("structure", _str_array(sources)),
                **{f"info_{k}": ("structure", v) for k, v in info.items()},
            },
            coords={"xyz": ["x", "y", "z"], "voigt": list(VOIGT)},
        )
        return cls(_with_attrs(data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dataset:
        """Load a dataset saved with :meth:`save` (netCDF)."""
        path = Path(path)
        if not path.exists():
            raise FileFormatError(f"dataset file {path} does not exist")
        try:
            with xr.open_dataset(path, engine=NETCDF_ENGINE) as raw:
                data = raw.load()
        except Exception as exc:
            raise FileFormatError(
                f"{path} is not a netCDF dataset written by nnp-lab ({type(exc).__name__}: {exc})"
            ) from None
        return cls(data)

    @classmethod
    def read(cls, path: str | os.PathLike, index: str | int = ":", **kwargs: Any) -> Dataset:
        """Read netCDF (``.nc``), ANI-1x/2x HDF5 (``.h5``/``.hdf5``) or any ``ase.io`` file.

        Extra keyword arguments go to the ANI HDF5 loader
        (:func:`nnp_lab.data.ani_h5.read_ani_h5`) or to ``ase.io.read``.
        """
        path = Path(path)
        if not path.exists():
            raise FileFormatError(f"file {path} does not exist")
        with open(path, "rb") as fh:
            magic = fh.read(8)
        suffix = path.suffix.lower()
        if suffix in (".nc", ".netcdf", ".cdf", ".nc4"):
            return cls.load(path)
        if magic.startswith(b"\x89HDF"):
            if _is_nnp_netcdf(path):
                return cls.load(path)
            from nnp_lab.data.ani_h5 import read_ani_h5

            return read_ani_h5(path, **kwargs)
        if suffix in (".h5", ".hdf5"):
            raise FileFormatError(f"{path} has an HDF5 suffix but is not an HDF5 file")
        import ase.io

        try:
            structures = ase.io.read(path, index=index, **kwargs)
        except Exception as exc:
            raise FileFormatError(
                f"cannot read {path}: it is not netCDF/HDF5 and ase.io could not read it "
                f"({type(exc).__name__}: {exc}). Give a file in a format ase.io knows "
                "(extxyz, xyz, traj, POSCAR, cif, ...) or pass format=..."
            ) from None
        if isinstance(structures, Atoms):
            structures = [structures]
        if not structures:
            raise FileFormatError(f"{path} contains no structures")
        return cls.from_atoms(structures, source=path.name)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the dataset to netCDF atomically (temp file + rename)."""
        data = self._data.copy()
        data.attrs["content_hash"] = self.content_hash()
        for name in data.variables:
            # encodings come from whichever file a variable was first read from; a fixed
            # string width from there would truncate longer strings added since
            data[name].encoding = {}

        def write(tmp: Path) -> None:
            data.to_netcdf(tmp, engine=NETCDF_ENGINE)

        return atomic_write(path, write)

    # ------------------------------------------------------------------ access
    @property
    def xr(self) -> xr.Dataset:
        """The underlying ``xarray.Dataset``."""
        return self._data

    def __len__(self) -> int:
        return int(self._data.sizes["structure"])

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"<nnp_lab.Dataset: {s['structures']} structures, {s['atoms']} atoms, "
            f"species {s['species']}, {s['labelled']} labelled, {s['failed']} failed>"
        )

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> Atoms | Dataset:
        if isinstance(key, (int, np.integer)):
            return self.atoms(int(key))
        if isinstance(key, slice):
            return self.subset(np.arange(len(self))[key])
        return self.subset(np.asarray(key))

    def __add__(self, other: Dataset) -> Dataset:
        return Dataset.concat([self, other])

    def __iter__(self):
        for k in range(len(self)):
            yield self.atoms(k)

    @property
    def ptr(self) -> np.ndarray:
        """(S + 1,) offsets of each structure's atoms."""
        return self._ptr

    @property
    def n_atoms(self) -> np.ndarray:
        return np.asarray(self._data["n_atoms"].values, dtype=np.int64)

    @property
    def numbers(self) -> np.ndarray:
        return np.asarray(self._data["numbers"].values, dtype=np.int64)

    @property
    def energy(self) -> np.ndarray:
        return np.asarray(self._data["energy"].values, dtype=np.float64)

    @property
    def status(self) -> np.ndarray:
        return np.asarray(self._data["status"].values).astype(str)

    @property
    def species(self) -> list[str]:
        """Chemical symbols present, sorted by atomic number."""
        return symbols_of(self.numbers)

    def structure_arrays(self, k: int) -> dict[str, np.ndarray]:
        """Arrays of structure ``k``: numbers, positions, forces, cell, pbc, energy, stress."""
        lo, hi = self._ptr[k], self._ptr[k + 1]
        d = self._data
        return {
            "numbers": np.asarray(d["numbers"].values[lo:hi], dtype=np.int64),
            "positions": np.asarray(d["positions"].values[lo:hi], dtype=np.float64),
            "forces": np.asarray(d["forces"].values[lo:hi], dtype=np.float64),
            "cell": np.asarray(d["cell"].values[k], dtype=np.float64),
            "pbc": np.asarray(d["pbc"].values[k]).astype(bool),
            "energy": float(d["energy"].values[k]),
            "stress": np.asarray(d["stress"].values[k], dtype=np.float64)
            if "stress" in d
            else np.full(6, np.nan),
        }

    def atoms(self, k: int) -> Atoms:
        """Structure ``k`` as ``ase.Atoms`` with its labels in a SinglePointCalculator."""
        n = len(self)
        if not -n <= k < n:
            raise IndexError(f"structure {k} out of range for a dataset of {n}")
        k = k % n
        a = self.structure_arrays(k)
        atoms = Atoms(numbers=a["numbers"], positions=a["positions"], cell=a["cell"], pbc=a["pbc"])
        d = self._data
        atoms.info["status"] = str(d["status"].values[k])
        atoms.info["method"] = str(d["method"].values[k])
        atoms.info["source"] = str(d["source"].values[k])
        if d["error"].values[k]:
            atoms.info["error"] = str(d["error"].values[k])
        for var in d.data_vars:
            if var.startswith("info_") and np.isfinite(d[var].values[k]):
                atoms.info[var[5:]] = float(d[var].values[k])
        results: dict[str, Any] = {}
        if np.isfinite(a["energy"]):
            results["energy"] = a["energy"]
            results["free_energy"] = a["energy"]
        if np.isfinite(a["forces"]).all():
            results["forces"] = a["forces"]
        if np.isfinite(a["stress"]).all():
            results["stress"] = a["stress"]
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def to_batch(
        self,
        indices: Sequence[int] | None = None,
        dtype: Any = None,
        device: Any = "cpu",
    ) -> Batch:
        """The structures ``indices`` (default: all) as one flat :class:`Batch` with labels."""
        import torch

        idx = range(len(self)) if indices is None else indices
        arrays = [self.structure_arrays(int(k)) for k in idx]
        voigt = [a["stress"] for a in arrays]
        stress = [
            np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]]) for s in voigt
        ]
        return Batch.from_arrays(
            [a["numbers"] for a in arrays],
            [a["positions"] for a in arrays],
            [a["cell"] for a in arrays],
            [a["pbc"] for a in arrays],
            energy=[a["energy"] for a in arrays],
            forces=[a["forces"] for a in arrays],
            stress=stress,
            dtype=dtype or torch.float64,
            device=device,
        )

    def to_atoms(self) -> list[Atoms]:
        """All structures as ``ase.Atoms``."""
        return [self.atoms(k) for k in range(len(self))]

    # ------------------------------------------------------------------ selection
    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """A new dataset with the structures ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"structure indices out of range for a dataset of {len(self)}")
        idx = idx % max(len(self), 1)
        counts = self.n_atoms[idx]
        starts = self._ptr[idx]
        atom_idx = np.repeat(
            starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts
        ) + np.arange(counts.sum())
        return Dataset(self._data.isel(structure=idx, atom=atom_idx))

    def labelled(self) -> Dataset:
        """Structures with status ``ok`` and a finite energy (what training uses)."""
        ok = (self.status == STATUS_OK) & np.isfinite(self.energy)
        return self.subset(np.flatnonzero(ok))

    def filter(self, predicate: Callable[[Atoms], bool]) -> Dataset:
        """Structures for which ``predicate(atoms)`` is true."""
        return self.subset([k for k in range(len(self)) if predicate(self.atoms(k))])

    def split(
        self, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
    ) -> tuple[Dataset, ...]:
        """Random split, reproducible from ``seed``; one dataset per fraction.

        Fractions must be positive and sum to 1; each part gets ``round(f * n)``
        structures except the first, which takes the remainder.
        """
        fr = np.asarray(fractions, dtype=float)
        if fr.ndim != 1 or fr.size < 1 or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
            raise InputError(
                f"split fractions must be non-negative and sum to 1, got {list(fractions)}"
            )
        n = len(self)
        perm = np.random.default_rng(seed).permutation(n)
        sizes = [round(f * n) for f in fr[1:]]
        first = n - sum(sizes)
        if first < 0:
            raise InputError(f"cannot split {n} structures into fractions {list(fractions)}")
        bounds = np.cumsum([0, first, *sizes])
        return tuple(self.subset(np.sort(perm[bounds[k] : bounds[k + 1]])) for k in range(len(fr)))

    @staticmethod
    def concat(parts: Sequence[Dataset]) -> Dataset:
        """Concatenate datasets (variables missing in some parts are filled with NaN/"")."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise InputError("nothing to concatenate: all datasets are empty")
        names = set().union(*(p.xr.data_vars for p in parts))
        datas = []
        for p in parts:
            d = p.xr
            for name in names - set(d.data_vars):
                ref = next(q.xr[name] for q in parts if name in q.xr)
                shape = tuple(d.sizes.get(dim, ref.sizes[dim]) for dim in ref.dims)
                fill = "" if ref.dtype == object else np.nan
                d = d.assign(
                    {
                        name: (
                            ref.dims,
                            np.full(shape, fill, dtype=ref.dtype if fill == "" else float),
                        )
                    }
                )
            datas.append(d)
        struct_vars = sorted(v for v in names if "structure" in datas[0][v].dims)
        atom_vars = sorted(v for v in names if "atom" in datas[0][v].dims)
        by_structure = xr.concat([d[struct_vars] for d in datas], dim="structure")
        by_atom = xr.concat([d[atom_vars] for d in datas], dim="atom")
        data = xr.merge([by_structure, by_atom], compat="override", join="override")
        return Dataset(_with_attrs(data))

    # ------------------------------------------------------------------ labelling
    def label(
        self,
        labeler: Any,
        cache: Any = None,
        progress: Callable[[int, int], None] | None = None,
        only_missing: bool = False,
        show_progress: bool = True,
        retry_failed: bool = False,
    ) -> Dataset:
        """Label every structure with ``labeler`` (see :mod:`nnp_lab.data.labelers`).

        ``cache`` is a :class:`~nnp_lab.data.cache.LabelCache` or a path to its SQLite file;
        cached results are reused, so re-running never pays twice. Failed calculations are
        kept with status ``failed`` and their error message. ``only_missing`` keeps labels
        that are already ``ok``; ``retry_failed`` recomputes cached failures.
        """
        from nnp_lab.data.labelers import label_dataset

        return label_dataset(
            self,
            labeler,
            cache=cache,
            progress=progress,
            only_missing=only_missing,
            show_progress=show_progress,
            retry_failed=retry_failed,
        )

    # ------------------------------------------------------------------ summaries
    def content_hash(self) -> str:
        """SHA-256 of geometries and labels (provenance for models trained on it)."""
        h = hashlib.sha256()
        d = self._data
        for name in ("numbers", "positions", "n_atoms", "cell", "pbc", "energy", "forces"):
            h.update(np.ascontiguousarray(d[name].values).tobytes())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        """Counts, species, methods and energy/force statistics."""
        st = self.status
        e = self.energy
        ok = (st == STATUS_OK) & np.isfinite(e)
        f = np.asarray(self._data["forces"].values)
        fin = np.isfinite(f).all(axis=1)
        return {
            "structures": len(self),
            "atoms": int(self.n_atoms.sum()),
            "species": self.species,
            "labelled": int(ok.sum()),
            "failed": int((st == STATUS_FAILED).sum()),
            "unlabelled": int((st == STATUS_UNLABELLED).sum()),
            "methods": sorted({str(m) for m in self._data["method"].values} - {""}),
            "energy_per_atom_mean_eV": float(np.mean(e[ok] / self.n_atoms[ok]))
            if ok.any()
            else None,
            "energy_per_atom_std_eV": float(np.std(e[ok] / self.n_atoms[ok])) if ok.any() else None,
            "force_rms_eV_per_A": float(np.sqrt(np.mean(f[fin] ** 2))) if fin.any() else None,
        }


def _with_attrs(data: xr.Dataset) -> xr.Dataset:
    from nnp_lab import __version__

    for name, unit in UNITS.items():
        if name in data:
            data[name].attrs["units"] = unit
    data.attrs.setdefault("title", "nnp-lab dataset")
    data.attrs["nnp_lab_version"] = __version__
    data.attrs["layout"] = (
        "flat atoms; structure k owns atoms ptr[k]:ptr[k+1], ptr = cumsum(n_atoms)"
    )
    return data


def _is_nnp_netcdf(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "n_atoms" in f and "positions" in f
    except OSError:
        return False
