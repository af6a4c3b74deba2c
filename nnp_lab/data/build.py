"""Declarative dataset building: structures → samplers → reference labels → netCDF.

A YAML/JSON file validated by :class:`DatasetBuildConfig` drives ``nnp-lab dataset build``::

    output: cu.nc
    labeler: {kind: emt}
    cache: labels.sqlite
    sources:
      - kind: md
        structures: [{bulk: {symbol: Cu, a: 3.61, cubic: true}, repeat: [2, 2, 2]}]
        temperatures: [300, 600, 900]
        frames: 10
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nnp_lab.data.dataset import Dataset
from nnp_lab.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BulkSpec(_Strict):
    """``ase.build.bulk`` arguments."""

    symbol: str
    crystalstructure: str | None = None
    a: float | None = Field(None, gt=0)
    c: float | None = Field(None, gt=0)
    cubic: bool = False


class SurfaceSpec(_Strict):
    """An ``ase.build`` surface slab (``fcc100``, ``fcc111``, ``fcc110``, ``bcc100``, ``bcc110``, ``hcp0001``)."""

    facet: Literal["fcc100", "fcc111", "fcc110", "bcc100", "bcc110", "hcp0001"]
    symbol: str
    size: tuple[int, int, int] = (3, 3, 4)
    vacuum: float = Field(8.0, gt=0)
    a: float | None = Field(None, gt=0)
    periodic_z: bool = False


class AdsorbateSpec(_Strict):
    """An adatom placed with ``ase.build.add_adsorbate`` (site name or (x, y) in Å)."""

    symbol: str
    height: float = Field(1.8, gt=0)
    position: str | tuple[float, float] = "hollow"
    offset: tuple[int, int] | None = None


class StructureSpec(_Strict):
    """One starting structure: from a file, a molecule name, a bulk crystal or a slab."""

    file: str | None = None
    index: int | str = 0
    molecule: str | None = None
    vacuum: float | None = Field(None, gt=0, description="box around a molecule (non-periodic)")
    bulk: BulkSpec | None = None
    surface: SurfaceSpec | None = None
    adsorbates: list[AdsorbateSpec] = Field(default_factory=list)
    repeat: tuple[int, int, int] = (1, 1, 1)
    name: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StructureSpec:
        given = [k for k in ("file", "molecule", "bulk", "surface") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of file, molecule, bulk, surface (got {given or 'none'})"
            )
        if self.adsorbates and self.surface is None:
            raise ValueError("adsorbates can only be placed on a surface")
        return self

    def build(self, base_dir: Path) -> list[Atoms]:
        """The structure(s) this spec describes."""
        from ase import build

        if self.file is not None:
            import ase.io

            path = Path(self.file)
            path = path if path.is_absolute() else base_dir / path
            try:
                got = ase.io.read(path, index=self.index)
            except Exception as exc:
                raise InputError(f"cannot read structure file {path}: {exc}") from None
            structures = got if isinstance(got, list) else [got]
            label = path.name
        elif self.molecule is not None:
            try:
                atoms = build.molecule(self.molecule)
            except KeyError:
                raise InputError(
                    f"unknown molecule {self.molecule!r} (ase.build.molecule names, e.g. 'H2O')"
                ) from None
            if self.vacuum:
                atoms.center(vacuum=self.vacuum)
            structures, label = [atoms], self.molecule
        elif self.bulk is not None:
            b = self.bulk
            atoms = build.bulk(b.symbol, b.crystalstructure, a=b.a, c=b.c, cubic=b.cubic)
            structures, label = [atoms], f"bulk-{b.symbol}"
        else:
            s = self.surface
            assert s is not None
            maker = getattr(build, s.facet)
            kwargs: dict[str, Any] = {
                "size": tuple(s.size),
                "vacuum": s.vacuum,
                "periodic": s.periodic_z,
            }
            if s.a is not None:
                kwargs["a"] = s.a
            atoms = maker(s.symbol, **kwargs)
            for ad in self.adsorbates:
                build.add_adsorbate(
                    atoms, ad.symbol, ad.height, position=ad.position, offset=ad.offset
                )
            n_ad = len(self.adsorbates)
            structures, label = [atoms], f"{s.facet}-{s.symbol}" + (f"+{n_ad}ad" if n_ad else "")
        out = []
        for a in structures:
            a = a.repeat(self.repeat) if self.repeat != (1, 1, 1) else a.copy()
            a.info["source"] = self.name or label
            out.append(a)
        return out


class _Source(_Strict):
    structures: list[StructureSpec] = Field(min_length=1)
    seed: int | None = None


class StructuresSource(_Source):
    """Use the structures as they are."""

    kind: Literal["structures"]


class RattleSource(_Source):
    """Gaussian random displacements."""

    kind: Literal["rattle"]
    n: int = Field(10, ge=1)
    stdev: float = Field(0.05, gt=0)


class MDSource(_Source):
    """Langevin MD driven by the reference labeler; frames come labelled."""

    kind: Literal["md"]
    temperatures: list[float] = Field(default_factory=lambda: [300.0], min_length=1)
    frames: int = Field(10, ge=1, description="frames per structure and temperature")
    interval: int = Field(10, ge=1, description="MD steps between frames")
    timestep_fs: float = Field(1.0, gt=0)
    friction: float = Field(0.01, gt=0, description="Langevin friction (1/fs)")
    equilibration_steps: int = Field(0, ge=0)


class NormalModeSource(_Source):
    """Boltzmann-weighted displacements along the reference's normal modes."""

    kind: Literal["normal_modes"]
    n: int = Field(10, ge=1)
    temperature: float = Field(300.0, gt=0)
    quantum: bool = Field(
        False, description="quantum (zero-point) spread of each mode instead of classical"
    )


class DimerScanSource(_Source):
    """Rigid scan of fragment B against fragment A along a distance."""

    kind: Literal["dimer_scan"]
    fragment: list[int] = Field(min_length=1, description="atom indices of fragment A")
    distances: list[float] = Field(min_length=1)
    pair: tuple[int, int] | None = None


Source = Annotated[
    StructuresSource | RattleSource | MDSource | NormalModeSource | DimerScanSource,
    Field(discriminator="kind"),
]


class DatasetBuildConfig(_Strict):
    """What ``nnp-lab dataset build`` does: sources of geometries and one reference labeler."""

    output: str = "dataset.nc"
    labeler: dict[str, Any] = Field(
        description="labeler config, e.g. {kind: emt} or {kind: pyscf, method: hf}"
    )
    cache: str | None = "label_cache.sqlite"
    seed: int = 0
    sources: list[Source] = Field(min_length=1)


def _sample(src: Any, atoms: Atoms, labeler: Any, seed: int) -> list[Atoms]:
    from nnp_lab.data import samplers

    if src.kind == "structures":
        return [atoms.copy()]
    if src.kind == "rattle":
        return samplers.rattle(atoms, src.n, stdev=src.stdev, seed=seed)
    if src.kind == "md":
        temps = src.temperatures
        out = []
        for t_index, temp in enumerate(temps):
            out += samplers.md_snapshots(
                atoms,
                labeler,
                temperature_K=temp,
                n_frames=src.frames,
                interval=src.interval,
                timestep_fs=src.timestep_fs,
                friction=src.friction,
                seed=seed + 7919 * t_index,
                equilibration_steps=src.equilibration_steps,
            )
        return out
    if src.kind == "normal_modes":
        return samplers.normal_mode_samples(
            atoms,
            labeler.as_calculator(),
            src.n,
            temperature_K=src.temperature,
            seed=seed,
            quantum=src.quantum,
        )
    if src.kind == "dimer_scan":
        return samplers.dimer_scan(atoms, src.fragment, src.distances, pair=src.pair)
    raise InputError(f"unknown source kind {src.kind!r}")


def build_dataset(
    config: DatasetBuildConfig | dict,
    base_dir: str | os.PathLike = ".",
    progress: Callable[[int, int], None] | None = None,
    show_progress: bool = True,
) -> Dataset:
    """Generate and label the structures ``config`` describes (paths relative to ``base_dir``).

    Structures sampled by MD with the reference come labelled already; everything else is
    labelled through the on-disk cache, so re-running costs no reference calls.
    """
    from nnp_lab.config_io import validate
    from nnp_lab.data.labelers import make_labeler

    config = validate(DatasetBuildConfig, config, source="dataset build config")
    base = Path(base_dir)
    labeler = make_labeler(config.labeler)
    structures: list[Atoms] = []
    for s_index, src in enumerate(config.sources):
        seed = config.seed + 1000 * s_index if src.seed is None else src.seed
        for k, spec in enumerate(src.structures):
            for m, atoms in enumerate(spec.build(base)):
                got = _sample(src, atoms, labeler, seed + 101 * k + 13 * m)
                name = atoms.info.get("source", "")
                for a in got:
                    how = a.info.get("source", "")
                    a.info["source"] = (
                        name if src.kind == "structures" or not how else f"{name}: {how}"
                    )
                structures += got
    ds = Dataset.from_atoms(structures)
    cache = None
    if config.cache:
        cache = Path(config.cache)
        cache = cache if cache.is_absolute() else base / cache
    ds = ds.label(
        labeler, cache=cache, progress=progress, only_missing=True, show_progress=show_progress
    )
    ds.xr.attrs["labeler_settings"] = str(labeler.settings())
    return ds


def summarize_sources(ds: Dataset) -> dict[str, int]:
    """Number of structures per ``source`` tag."""
    src = np.asarray(ds.xr["source"].values).astype(str)
    names, counts = np.unique(src, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}
