"""Reference calculators ("labelers") behind one interface, and dataset labelling.

Every labeler has a human-readable :attr:`Labeler.method`, JSON-serialisable
:meth:`Labeler.settings` (everything that changes the numbers; it is part of the cache key),
:meth:`Labeler.compute` (may raise), :meth:`Labeler.label` (never raises for a failed
calculation: returns a ``"failed"`` :class:`LabelResult` with the reason) and
:meth:`Labeler.as_calculator` (an ASE calculator, so samplers can run MD with the reference).

Error policy: input a labeler can *never* handle (an element EMT has no parameters for, a
periodic cell given to PySCF, an odd electron count for ``spin=0``, a basis set PySCF does not
know for an element) raises :class:`~nnp_lab.errors.InputError` from :meth:`Labeler.check`,
:meth:`Labeler.label` and :func:`label_dataset` (before any calculation is run). Anything
that goes wrong *during* a calculation (SCF/CC not converged, a library error) becomes a
failed result that is kept in the dataset.

Units follow ASE: energies in eV, forces in eV/Å, stress in eV/Å³ (Voigt order
xx yy zz yz xz xy, ASE sign convention).
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import (
    CalculationFailed,
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from nnp_lab.errors import ConfigError, InputError, LabelingError

if TYPE_CHECKING:
    from nnp_lab.data.cache import LabelCache
    from nnp_lab.data.dataset import Dataset

STATUS_OK = "ok"
STATUS_FAILED = "failed"


# ---------------------------------------------------------------------------- results
@dataclass
class LabelResult:
    """Outcome of one reference calculation (ASE units)."""

    energy: float = float("nan")  #: eV; NaN if the calculation failed
    forces: np.ndarray | None = None  #: (N, 3) eV/Å
    stress: np.ndarray | None = None  #: (6,) Voigt xx yy zz yz xz xy, eV/Å³
    status: str = STATUS_OK  #: "ok" or "failed"
    error: str = ""  #: why it failed ("" when ok)
    extras: dict[str, float] = field(default_factory=dict)  #: e.g. interaction_energy, bsse (eV)
    wall_time: float = 0.0  #: seconds spent computing

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK and math.isfinite(self.energy)

    @classmethod
    def failed(cls, error: str, wall_time: float = 0.0) -> LabelResult:
        """A failed result with NaN energy and the reason ``error``."""
        return cls(status=STATUS_FAILED, error=error, wall_time=wall_time)

    def results(self) -> dict[str, Any]:
        """ASE ``calc.results``-style dict (empty when failed)."""
        if not self.ok:
            return {}
        out: dict[str, Any] = {"energy": float(self.energy), "free_energy": float(self.energy)}
        if self.forces is not None:
            out["forces"] = np.array(self.forces, dtype=np.float64)
        if self.stress is not None:
            out["stress"] = np.array(self.stress, dtype=np.float64)
        return out


# ---------------------------------------------------------------------------- interface
class Labeler(ABC):
    """A reference method that labels ``ase.Atoms`` with energy, forces (and stress)."""

    @property
    @abstractmethod
    def method(self) -> str:
        """Human-readable method name, e.g. ``"EMT"`` or ``"PySCF/CCSD(T)/cc-pVDZ"``."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings: everything that changes the numbers."""

    @abstractmethod
    def compute(self, atoms: Atoms) -> LabelResult:
        """Run the calculation; raises on failure (prefer :meth:`label`)."""

    def check(self, atoms: Atoms) -> None:
        """Raise :class:`InputError` if this labeler can never handle ``atoms``."""
        if not isinstance(atoms, Atoms):
            raise InputError(f"{self.method}: expected ase.Atoms, got {type(atoms).__name__}")
        if len(atoms) == 0:
            raise InputError(f"{self.method}: the structure has no atoms")
        if not np.isfinite(atoms.positions).all():
            raise InputError(f"{self.method}: positions contain NaN or inf")

    def label(self, atoms: Atoms) -> LabelResult:
        """Label ``atoms``; a failed calculation gives ``status="failed"`` and the reason.

        Raises :class:`InputError` only for input this labeler can never handle
        (see :meth:`check`).
        """
        self.check(atoms)
        t0 = time.perf_counter()
        try:
            result = self.compute(atoms)
        except InputError:
            raise
        except Exception as exc:  # every calculation failure is recorded
            return LabelResult.failed(_describe(exc), time.perf_counter() - t0)
        if result.status == STATUS_OK and not math.isfinite(result.energy):
            return LabelResult.failed(
                f"{self.method} returned a non-finite energy ({result.energy})", result.wall_time
            )
        if result.forces is not None and not np.isfinite(result.forces).all():
            return LabelResult.failed(f"{self.method} returned non-finite forces", result.wall_time)
        return result

    def as_calculator(self) -> Calculator:
        """An ASE calculator running this reference (energy, forces, stress when available)."""
        return LabelerCalculator(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method}>"


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip() or repr(exc)
    if isinstance(exc, (LabelingError, CalculationFailed)):
        return msg
    return f"{type(exc).__name__}: {msg}"


class LabelerCalculator(Calculator):
    """ASE calculator adapter around a :class:`Labeler` (raises ``CalculationFailed``)."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, labeler: Labeler, **kwargs: Any):
        super().__init__(**kwargs)
        self.labeler = labeler

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.labeler.method

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        self.labeler.check(self.atoms)
        result = self.labeler.label(self.atoms)
        if not result.ok:
            raise CalculationFailed(f"{self.labeler.method}: {result.error}")
        self.results = result.results()
        for prop in properties:
            if prop not in self.results:
                raise PropertyNotImplementedError(
                    f"{self.labeler.method} does not provide {prop!r} for this structure"
                    + (" (forces are off for this labeler)" if prop == "forces" else "")
                )


def _ase_results(calc: Calculator, atoms: Atoms, want_stress: bool) -> LabelResult:
    """Energy/forces(/stress) of ``atoms`` from an ASE calculator."""
    t0 = time.perf_counter()
    atoms = atoms.copy()
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    forces = None
    if "forces" in calc.implemented_properties:
        forces = np.array(atoms.get_forces(), dtype=np.float64)
    stress = None
    if want_stress and atoms.pbc.all() and "stress" in calc.implemented_properties:
        stress = np.array(atoms.get_stress(voigt=True), dtype=np.float64)
    atoms.calc = None
    return LabelResult(
        energy=energy, forces=forces, stress=stress, wall_time=time.perf_counter() - t0
    )


# ---------------------------------------------------------------------------- ASE-backed
class _CalculatorLabeler(Labeler):
    """A labeler that reuses one ASE calculator from :meth:`as_calculator`.

    The calculator is rebuilt after a failure: a failed calculation (e.g. an unconverged
    tblite SCF) can leave its cached state unusable.
    """

    _calc: Calculator | None = None

    def compute(self, atoms: Atoms) -> LabelResult:
        if self._calc is None:
            self._calc = self.as_calculator()
        try:
            return _ase_results(self._calc, atoms, want_stress=True)
        except Exception:
            self._calc = None
            raise


# ---------------------------------------------------------------------------- EMT
class EMTLabeler(_CalculatorLabeler):
    """ASE's effective-medium theory (``ase.calculators.emt.EMT``).

    Energy and forces for any structure of the elements EMT has parameters for
    (Al Cu Ag Au Ni Pd Pt, and the rough H C N O); stress only for cells periodic in all
    three directions. Other elements raise :class:`InputError`.
    """

    def __init__(self) -> None:
        from ase.calculators.emt import parameters

        self.supported = frozenset(parameters)
        self._calc: Calculator | None = None

    @property
    def method(self) -> str:
        return "EMT"

    def settings(self) -> dict[str, Any]:
        import ase

        return {"code": "ase.calculators.emt.EMT", "ase_version": ase.__version__}

    def check(self, atoms: Atoms) -> None:
        super().check(atoms)
        bad = sorted(set(atoms.get_chemical_symbols()) - self.supported)
        if bad:
            raise InputError(
                f"EMT has no parameters for element(s) {bad}; it supports "
                f"{sorted(self.supported)}. Use another labeler (e.g. XTBLabeler)."
            )

    def as_calculator(self) -> Calculator:
        from ase.calculators.emt import EMT

        return EMT()


# ---------------------------------------------------------------------------- xTB
XTB_METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")
XTB_MAX_Z = 86  # GFN1/GFN2 parameters cover H-Rn


class XTBLabeler(_CalculatorLabeler):
    """Extended tight binding via tblite (``tblite.ase.TBLite``).

    ``charge`` and ``multiplicity`` are always passed to tblite, so the atoms' initial
    charges/magnetic moments are ignored. Every SCF starts from tblite's default guess (never
    from the previous structure's wavefunction), so a label depends on the geometry only. Stress only for cells periodic in all three
    directions. SCF non-convergence after ``max_iterations`` gives a failed result.
    """

    def __init__(
        self,
        method: str = "GFN2-xTB",
        charge: int = 0,
        multiplicity: int = 1,
        accuracy: float = 1.0,
        electronic_temperature: float = 300.0,
        max_iterations: int = 250,
    ):
        if method not in XTB_METHODS:
            raise InputError(f"unknown xTB method {method!r}; choose one of {list(XTB_METHODS)}")
        if int(multiplicity) < 1:
            raise InputError(f"multiplicity must be >= 1, got {multiplicity}")
        if accuracy <= 0:
            raise InputError(f"accuracy must be > 0, got {accuracy}")
        if electronic_temperature < 0:
            raise InputError(f"electronic_temperature must be >= 0 K, got {electronic_temperature}")
        if int(max_iterations) < 1:
            raise InputError(f"max_iterations must be >= 1, got {max_iterations}")
        self._method = method
        self.charge = int(charge)
        self.multiplicity = int(multiplicity)
        self.accuracy = float(accuracy)
        self.electronic_temperature = float(electronic_temperature)
        self.max_iterations = int(max_iterations)
        self._calc: Calculator | None = None

    @property
    def method(self) -> str:
        return self._method

    def settings(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {
            "code": "tblite",
            "tblite_version": version("tblite"),
            "method": self._method,
            "charge": self.charge,
            "multiplicity": self.multiplicity,
            "accuracy": self.accuracy,
            "electronic_temperature": self.electronic_temperature,
            "max_iterations": self.max_iterations,
        }

    def check(self, atoms: Atoms) -> None:
        super().check(atoms)
        z = int(atoms.numbers.max())
        if z > XTB_MAX_Z:
            raise InputError(
                f"{self._method} has parameters up to Z={XTB_MAX_Z} (Rn); got "
                f"{chemical_symbols[z]} (Z={z})"
            )
        n_elec = int(atoms.numbers.sum()) - self.charge
        if (n_elec - (self.multiplicity - 1)) % 2:
            raise InputError(
                f"{n_elec} electrons (charge {self.charge}) cannot have multiplicity "
                f"{self.multiplicity}; set charge/multiplicity consistently"
            )

    def as_calculator(self) -> Calculator:
        return _fresh_tblite_class()(
            method=self._method,
            charge=self.charge,
            multiplicity=self.multiplicity,
            accuracy=self.accuracy,
            electronic_temperature=self.electronic_temperature,
            max_iterations=self.max_iterations,
            verbosity=0,
        )


_FRESH_TBLITE: type | None = None


def _fresh_tblite_class() -> type:
    """``tblite.ase.TBLite`` that never restarts the SCF from the previous wavefunction.

    Stock TBLite reuses the last result as the SCF guess; with the default accuracy the
    converged forces then depend on what was computed before (we measured 2e-4 eV/Å and
    1e-8 eV for methanol), so labels would depend on history and cache order. Starting every
    calculation from the default guess makes a label a function of the geometry only.
    """
    global _FRESH_TBLITE
    if _FRESH_TBLITE is None:
        from tblite.ase import TBLite

        class FreshTBLite(TBLite):
            def calculate(self, atoms=None, properties=None, system_changes=all_changes):
                self._res = None
                super().calculate(atoms, properties, system_changes)

        _FRESH_TBLITE = FreshTBLite
    return _FRESH_TBLITE


# ---------------------------------------------------------------------------- PySCF
PYSCF_METHODS = ("hf", "dft", "mp2", "ccsd", "ccsd(t)")


class PySCFLabeler(Labeler):
    """Molecular quantum chemistry with PySCF: HF, DFT, MP2, CCSD, CCSD(T).

    Closed shell (``spin=0``) uses RHF/RKS references, open shell (``spin = 2S > 0``) UHF/UKS.
    All electrons are correlated (no frozen core). Energies are converted Hartree → eV and
    gradients Ha/Bohr → forces in eV/Å.

    Analytic gradients used with ``forces=None`` (auto), verified against finite
    differences with PySCF 2.14:

    ======== ============================== =============================================
    method   closed shell (spin=0)          open shell (spin>0)
    ======== ============================== =============================================
    hf       RHF gradients                  UHF gradients
    dft      RKS gradients (no grid resp.)  UKS gradients
    mp2      MP2 gradients                  UMP2 gradients
    ccsd     CCSD gradients (Λ equations)   UCCSD gradients
    ccsd(t)  ``pyscf.grad.ccsd_t`` with     none: ``pyscf.grad.uccsd_t`` disagrees with
             (T)-Λ (``ccsd_t_lambda``)      finite differences (PySCF marks it FIXME), so
                                            forces are off and ``forces=True`` is an error
    ======== ============================== =============================================

    ``counterpoise=[indices of fragment A]`` (fragment B is the rest) gives the
    Boys–Bernardi counterpoise-corrected energy
    ``E_AB − (E_A^{AB} − E_A^{A}) − (E_B^{AB} − E_B^{B})`` (superscript: basis; the AB basis
    of a fragment uses ghost atoms at the partner's positions, fragments at their dimer
    geometry) and extras ``interaction_energy`` (CP-corrected, ``E_AB − E_A^{AB} − E_B^{AB}``),
    ``interaction_energy_raw`` (``E_AB − E_A^{A} − E_B^{B}``) and ``bsse``
    (``interaction_energy − interaction_energy_raw`` ≥ 0), all in eV. Forces are not
    computed with counterpoise. Fragment charges/spins default to neutral closed shells
    (only allowed when the total is); otherwise pass ``fragment_charges``/``fragment_spins``.

    ``density_fit=True`` (hf, dft, mp2) fits the SCF integrals with PySCF's JK-fit basis for
    the orbital basis (or ``auxbasis``) and MP2 with its RI basis; it changes a water-dimer
    interaction energy by < 0.001 kcal/mol and makes aug-cc-pVTZ affordable. DF-MP2 has no
    forces here.

    SCF, CC amplitude or Λ equations not converged → failed result ("SCF not converged
    after 100 cycles ..."). Periodic cells, impossible charge/spin, unknown basis for an
    element → :class:`InputError`.
    """

    def __init__(
        self,
        method: str = "hf",
        basis: str = "def2-svp",
        xc: str = "b3lyp",
        charge: int = 0,
        spin: int = 0,
        forces: bool | None = None,
        counterpoise: list[int] | None = None,
        conv_tol: float = 1e-9,
        max_cycle: int = 100,
        max_memory_mb: int = 2000,
        fragment_charges: tuple[int, int] | None = None,
        fragment_spins: tuple[int, int] | None = None,
        density_fit: bool = False,
        auxbasis: str | None = None,
    ):
        # PySCF brings its own OpenMP runtime, read when pyscf is first imported. With the
        # default (spinning) wait policy its idle threads starve torch/tblite on small
        # machines (measured 25x slower xTB calls); passive waiting unless the user chose.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        method = str(method).lower()
        if method not in PYSCF_METHODS:
            raise InputError(
                f"unknown PySCF method {method!r}; choose one of {list(PYSCF_METHODS)}"
            )
        if int(spin) < 0:
            raise InputError(f"spin is 2S = N_alpha - N_beta and must be >= 0, got {spin}")
        if conv_tol <= 0:
            raise InputError(f"conv_tol must be > 0, got {conv_tol}")
        if int(max_cycle) < 1:
            raise InputError(f"max_cycle must be >= 1, got {max_cycle}")
        if int(max_memory_mb) < 1:
            raise InputError(f"max_memory_mb must be >= 1, got {max_memory_mb}")
        if not isinstance(basis, str) or not basis:
            raise InputError(f"basis must be a basis-set name such as 'def2-svp', got {basis!r}")
        if method == "dft":
            from pyscf.dft import libxc

            try:
                libxc.parse_xc(xc)
            except Exception as exc:  # libxc raises KeyError/ValueError
                raise InputError(
                    f"unknown exchange-correlation functional xc={xc!r}: {exc}"
                ) from None
        if density_fit and method in ("ccsd", "ccsd(t)"):
            raise InputError(
                f"density_fit is supported for hf, dft and mp2, not {method}: use conventional "
                "integrals (density_fit=False) for coupled cluster"
            )
        if auxbasis is not None and not density_fit:
            raise InputError("auxbasis is only used with density_fit=True")
        self.density_fit = bool(density_fit)
        self.auxbasis = auxbasis
        self._kind = method
        self.basis = basis
        self.xc = xc
        self.charge = int(charge)
        self.spin = int(spin)
        self.conv_tol = float(conv_tol)
        self.max_cycle = int(max_cycle)
        self.max_memory_mb = int(max_memory_mb)
        self.counterpoise = None if counterpoise is None else [int(i) for i in counterpoise]
        if self.counterpoise is not None:
            if not self.counterpoise:
                raise InputError("counterpoise fragment A is empty; give the indices of its atoms")
            if len(set(self.counterpoise)) != len(self.counterpoise):
                raise InputError(f"counterpoise indices repeat: {self.counterpoise}")
            if min(self.counterpoise) < 0:
                raise InputError(f"counterpoise indices must be >= 0, got {self.counterpoise}")
        if fragment_charges is None:
            fragment_charges = (0, 0) if self.charge == 0 else None
        if fragment_spins is None:
            fragment_spins = (0, 0) if self.spin == 0 else None
        if self.counterpoise is not None:
            if fragment_charges is None or fragment_spins is None:
                raise InputError(
                    f"counterpoise with total charge {self.charge} / spin {self.spin}: give "
                    "fragment_charges=(qA, qB) and fragment_spins=(sA, sB)"
                )
            if sum(fragment_charges) != self.charge:
                raise InputError(
                    f"fragment_charges {tuple(fragment_charges)} do not add up to charge {self.charge}"
                )
        self.fragment_charges = (
            None if fragment_charges is None else tuple(map(int, fragment_charges))
        )
        self.fragment_spins = None if fragment_spins is None else tuple(map(int, fragment_spins))
        analytic = self.has_analytic_forces(method, self.spin) and not (
            self.density_fit and method == "mp2"
        )
        if forces is None:
            forces = analytic and self.counterpoise is None
        elif forces and self.counterpoise is not None:
            raise InputError("forces are not available with counterpoise; use forces=False/None")
        elif forces and not analytic:
            why = (
                "density-fitted MP2 has no gradients here"
                if self.density_fit
                else "UCCSD(T) gradients disagree with finite differences"
            )
            raise InputError(
                f"PySCF {self._name()} with spin={self.spin} has no reliable analytic gradients "
                f"({why}); use forces=False"
            )
        self.forces = bool(forces)
        self._checked_elements: set[frozenset[int]] = set()

    @staticmethod
    def has_analytic_forces(method: str, spin: int = 0) -> bool:
        """Whether PySCF has (reliable) analytic gradients for ``method`` at this ``spin``."""
        method = method.lower()
        if method == "ccsd(t)":
            return spin == 0
        return method in PYSCF_METHODS

    def _name(self) -> str:
        u = "U" if self.spin else ""
        if self.density_fit:
            u = "DF-" + u
        return {
            "hf": f"{u}HF",
            "dft": f"{u}{self.xc.upper()}" if u else self.xc.upper(),
            "mp2": f"{u}MP2",
            "ccsd": f"{u}CCSD",
            "ccsd(t)": f"{u}CCSD(T)",
        }[self._kind]

    @property
    def method(self) -> str:
        cp = "/CP" if self.counterpoise is not None else ""
        return f"PySCF/{self._name()}/{self.basis}{cp}"

    def settings(self) -> dict[str, Any]:
        import pyscf

        s: dict[str, Any] = {
            "code": "pyscf",
            "pyscf_version": pyscf.__version__,
            "method": self._kind,
            "basis": self.basis,
            "charge": self.charge,
            "spin": self.spin,
            "reference": ("U" if self.spin else "R") + ("KS" if self._kind == "dft" else "HF"),
            "frozen_core": False,
            "forces": self.forces,
            "conv_tol": self.conv_tol,
            "max_cycle": self.max_cycle,
            "counterpoise": self.counterpoise,
        }
        if self.density_fit:  # only then, so older cache keys stay valid
            s["density_fit"] = True
            s["auxbasis"] = self.auxbasis or "pyscf default jkfit for the basis"
            if self._kind == "mp2":
                s["auxbasis_mp2"] = "pyscf default ri (mp2fit) for the basis"
        if self._kind == "dft":
            s["xc"] = self.xc
        if self.counterpoise is not None:
            s["fragment_charges"] = list(self.fragment_charges or ())
            s["fragment_spins"] = list(self.fragment_spins or ())
        return s

    def check(self, atoms: Atoms) -> None:
        super().check(atoms)
        if atoms.pbc.any():
            raise InputError(
                f"PySCFLabeler handles molecules only, but pbc={atoms.pbc.tolist()}; "
                "set atoms.pbc = False (the cell is then ignored)"
            )
        self._check_electrons(atoms.numbers, self.charge, self.spin, "the structure")
        elements = frozenset(int(z) for z in atoms.numbers)
        if elements not in self._checked_elements:
            # building a Mole is cheap and finds a basis set lacking an element up front
            z = np.array(sorted(elements))
            pos = np.arange(len(z))[:, None] * np.array([[0.0, 0.0, 2.0]])
            spin = int(z.sum()) % 2
            self._mol(z, pos, np.zeros(len(z), bool), 0, spin)
            self._checked_elements.add(elements)
        if self.counterpoise is not None:
            n = len(atoms)
            a = self.counterpoise
            if max(a) >= n:
                raise InputError(
                    f"counterpoise index {max(a)} out of range for a structure of {n} atoms"
                )
            if len(a) == n:
                raise InputError("counterpoise fragment A has every atom; fragment B is empty")
            mask = np.zeros(n, bool)
            mask[a] = True
            qa, qb = self.fragment_charges  # type: ignore[misc]
            sa, sb = self.fragment_spins  # type: ignore[misc]
            self._check_electrons(atoms.numbers[mask], qa, sa, "fragment A")
            self._check_electrons(atoms.numbers[~mask], qb, sb, "fragment B")

    @staticmethod
    def _check_electrons(numbers: np.ndarray, charge: int, spin: int, what: str) -> None:
        n_elec = int(np.sum(numbers)) - charge
        if n_elec < 0 or spin > n_elec or (n_elec - spin) % 2:
            raise InputError(
                f"{what} has {n_elec} electrons (charge {charge}), which cannot have spin "
                f"2S={spin}; set charge/spin consistently"
            )

    # ------------------------------------------------------------------ calculation
    def _mol(
        self, numbers: np.ndarray, positions: np.ndarray, ghost: np.ndarray, charge: int, spin: int
    ):
        from pyscf import gto

        atom = [
            (("ghost-" if g else "") + chemical_symbols[int(z)], tuple(map(float, p)))
            for z, p, g in zip(numbers, positions, ghost, strict=True)
        ]
        mol = gto.Mole()
        mol.atom = atom
        mol.unit = "Angstrom"
        mol.basis = self.basis
        mol.charge = charge
        mol.spin = spin
        mol.verbose = 0
        mol.max_memory = self.max_memory_mb
        try:
            mol.build(dump_input=False, parse_arg=False)
        except Exception as exc:  # basis/charge errors come as many types
            raise InputError(
                f"PySCF cannot set up {self.method} for elements "
                f"{sorted({chemical_symbols[int(z)] for z in numbers})}: {_describe(exc)}"
            ) from None
        return mol

    def _run(self, mol, gradients: bool) -> tuple[float, np.ndarray | None]:
        """Energy (Ha) and gradient (Ha/Bohr) of ``mol`` with this method."""
        from pyscf import cc, dft, mp, scf

        unrestricted = mol.spin != 0
        if self._kind == "dft":
            mf = dft.UKS(mol) if unrestricted else dft.RKS(mol)
            mf.xc = self.xc
        else:
            mf = scf.UHF(mol) if unrestricted else scf.RHF(mol)
        if self.density_fit:
            mf = mf.density_fit(auxbasis=self.auxbasis)
        mf.conv_tol = self.conv_tol
        mf.max_cycle = self.max_cycle
        mf.verbose = 0
        mf.kernel()
        if not mf.converged:
            raise LabelingError(
                f"SCF not converged after {self.max_cycle} cycles (conv_tol={self.conv_tol:g} Ha)"
            )
        grad = None
        if self._kind in ("hf", "dft"):
            energy = float(mf.e_tot)
            if gradients:
                grad = mf.nuc_grad_method().kernel()
        elif self._kind == "mp2":
            if self.density_fit:
                from pyscf import df
                from pyscf.mp import dfmp2, dfump2

                pt = dfump2.DFUMP2(mf) if unrestricted else dfmp2.DFMP2(mf)
                # correlation with the RI basis made for the orbital basis (not the SCF's
                # JK-fit basis, which DFMP2 would reuse)
                pt.with_df = df.DF(mol, auxbasis=df.make_auxbasis(mol, mp2fit=True))
            else:
                pt = mp.MP2(mf)
            pt.verbose = 0
            pt.kernel()
            energy = float(pt.e_tot)
            if gradients:
                grad = pt.nuc_grad_method().kernel()
        else:
            mycc = cc.CCSD(mf)
            mycc.verbose = 0
            mycc.conv_tol = self.conv_tol
            mycc.conv_tol_normt = max(math.sqrt(self.conv_tol) / 10.0, 1e-8)
            mycc.max_cycle = self.max_cycle
            mycc.kernel()
            if not mycc.converged:
                raise LabelingError(f"CCSD not converged after {self.max_cycle} cycles")
            energy = float(mycc.e_tot)
            eris = None
            if self._kind == "ccsd(t)":
                eris = mycc.ao2mo()
                energy += float(mycc.ccsd_t(eris=eris))
            if gradients:
                if self._kind == "ccsd":
                    if eris is None:
                        eris = mycc.ao2mo()
                    l1, l2 = mycc.solve_lambda(eris=eris)
                    if not mycc.converged_lambda:
                        raise LabelingError(
                            f"CCSD lambda equations not converged after {self.max_cycle} cycles"
                        )
                    grad = mycc.nuc_grad_method().kernel(l1=l1, l2=l2, eris=eris)
                else:
                    from pyscf.cc import ccsd_t_lambda
                    from pyscf.grad import ccsd_t as ccsd_t_grad

                    eris = mycc.ao2mo()  # fresh integrals, as in PySCF's own (T)-gradient example
                    conv, l1, l2 = ccsd_t_lambda.kernel(
                        mycc,
                        eris,
                        mycc.t1,
                        mycc.t2,
                        max_cycle=self.max_cycle,
                        tol=mycc.conv_tol_normt,
                        verbose=0,
                    )
                    if not conv:
                        raise LabelingError(
                            f"CCSD(T) lambda equations not converged after {self.max_cycle} cycles"
                        )
                    grad = ccsd_t_grad.Gradients(mycc).kernel(mycc.t1, mycc.t2, l1, l2, eris=eris)
        return energy, None if grad is None else np.asarray(grad, dtype=np.float64)

    def compute(self, atoms: Atoms) -> LabelResult:
        from ase.units import Bohr, Hartree

        t0 = time.perf_counter()
        numbers = np.asarray(atoms.numbers)
        pos = np.asarray(atoms.positions, dtype=np.float64)
        no_ghost = np.zeros(len(numbers), bool)
        want_grad = self.forces and self.counterpoise is None
        e_ab, grad = self._run(self._mol(numbers, pos, no_ghost, self.charge, self.spin), want_grad)
        if self.counterpoise is None:
            forces = None if grad is None else -grad * (Hartree / Bohr)
            return LabelResult(
                energy=e_ab * Hartree, forces=forces, wall_time=time.perf_counter() - t0
            )
        in_a = np.zeros(len(numbers), bool)
        in_a[self.counterpoise] = True
        qa, qb = self.fragment_charges  # type: ignore[misc]
        sa, sb = self.fragment_spins  # type: ignore[misc]
        e_a_ab, _ = self._run(self._mol(numbers, pos, ~in_a, qa, sa), False)
        e_b_ab, _ = self._run(self._mol(numbers, pos, in_a, qb, sb), False)
        e_a, _ = self._run(self._mol(numbers[in_a], pos[in_a], no_ghost[in_a], qa, sa), False)
        e_b, _ = self._run(self._mol(numbers[~in_a], pos[~in_a], no_ghost[~in_a], qb, sb), False)
        bsse = (e_a - e_a_ab) + (e_b - e_b_ab)
        extras = {
            "interaction_energy": (e_ab - e_a_ab - e_b_ab) * Hartree,
            "interaction_energy_raw": (e_ab - e_a - e_b) * Hartree,
            "bsse": bsse * Hartree,
        }
        return LabelResult(
            energy=(e_ab + bsse) * Hartree, extras=extras, wall_time=time.perf_counter() - t0
        )


# ---------------------------------------------------------------------------- any ASE calculator
class ASELabeler(_CalculatorLabeler):
    """Any ASE calculator as a labeler.

    ``factory()`` builds the calculator (called lazily once, and again after a failure);
    ``method`` names it and ``settings`` must hold everything that changes its numbers
    (it is part of the cache key). Stress is taken for 3D-periodic cells when the
    calculator implements it.
    """

    def __init__(
        self,
        factory: Callable[[], Calculator],
        method: str,
        settings: dict[str, Any] | None = None,
    ):
        if not callable(factory):
            raise InputError("factory must be a callable returning an ASE calculator")
        if not method:
            raise InputError("ASELabeler needs a non-empty method name")
        settings = dict(settings or {})
        try:
            json.dumps(settings)
        except TypeError as exc:
            raise InputError(f"ASELabeler settings must be JSON-serialisable: {exc}") from None
        self.factory = factory
        self._method = str(method)
        self._settings = settings
        self._calc: Calculator | None = None

    @property
    def method(self) -> str:
        return self._method

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def as_calculator(self) -> Calculator:
        return self.factory()


# ---------------------------------------------------------------------------- configs
class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EMTConfig(_Config):
    """Configuration of :class:`EMTLabeler`."""

    kind: Literal["emt"] = "emt"


class XTBConfig(_Config):
    """Configuration of :class:`XTBLabeler`."""

    kind: Literal["xtb"] = "xtb"
    method: Literal["GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"] = "GFN2-xTB"
    charge: int = 0
    multiplicity: int = Field(1, ge=1)
    accuracy: float = Field(1.0, gt=0)
    electronic_temperature: float = Field(300.0, ge=0)
    max_iterations: int = Field(250, ge=1)


class PySCFConfig(_Config):
    """Configuration of :class:`PySCFLabeler`."""

    kind: Literal["pyscf"] = "pyscf"
    method: Literal["hf", "dft", "mp2", "ccsd", "ccsd(t)"] = "hf"
    basis: str = "def2-svp"
    xc: str = "b3lyp"
    charge: int = 0
    spin: int = Field(0, ge=0)
    forces: bool | None = None
    counterpoise: list[int] | None = None
    conv_tol: float = Field(1e-9, gt=0)
    max_cycle: int = Field(100, ge=1)
    max_memory_mb: int = Field(2000, ge=1)
    fragment_charges: tuple[int, int] | None = None
    fragment_spins: tuple[int, int] | None = None
    density_fit: bool = False
    auxbasis: str | None = None


LabelerConfig = Annotated[EMTConfig | XTBConfig | PySCFConfig, Field(discriminator="kind")]
_CONFIG_ADAPTER: TypeAdapter[Any] = TypeAdapter(LabelerConfig)


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc or '<config>'}: {err.get('msg', '')}")
    return "; ".join(parts)


def make_labeler(config: EMTConfig | XTBConfig | PySCFConfig | dict[str, Any]) -> Labeler:
    """Build a labeler from a config model or a dict with a ``kind`` of emt/xtb/pyscf.

    A dict that fails validation (unknown ``kind``, misspelt field, bad value) raises
    :class:`~nnp_lab.errors.ConfigError` naming the field, e.g.
    ``pyscf.basiss: Extra inputs are not permitted``.
    """
    if isinstance(config, dict):
        try:
            config = _CONFIG_ADAPTER.validate_python(config)
        except ValidationError as exc:
            raise ConfigError(f"invalid labeler config: {_format_validation_error(exc)}") from exc
    if isinstance(config, EMTConfig):
        return EMTLabeler()
    if isinstance(config, XTBConfig):
        return XTBLabeler(**config.model_dump(exclude={"kind"}))
    if isinstance(config, PySCFConfig):
        return PySCFLabeler(**config.model_dump(exclude={"kind"}))
    raise ConfigError(
        f"expected an EMTConfig/XTBConfig/PySCFConfig or a dict, got {type(config).__name__}"
    )


# ---------------------------------------------------------------------------- datasets
def _open_cache(cache: LabelCache | str | os.PathLike | None) -> tuple[LabelCache | None, bool]:
    from nnp_lab.data.cache import LabelCache

    if cache is None:
        return None, False
    if isinstance(cache, LabelCache):
        return cache, False
    if isinstance(cache, (str, os.PathLike)):
        return LabelCache(cache), True
    raise InputError(f"cache must be a LabelCache or a path, got {type(cache).__name__}")


def label_dataset(
    ds: Dataset,
    labeler: Labeler | dict[str, Any] | EMTConfig | XTBConfig | PySCFConfig,
    cache: LabelCache | str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    only_missing: bool = False,
    show_progress: bool = True,
    retry_failed: bool = False,
) -> Dataset:
    """Label every structure of ``ds`` with ``labeler``; returns a new :class:`Dataset`.

    - ``cache`` (a :class:`~nnp_lab.data.cache.LabelCache` or a path to its SQLite file):
      results are looked up first and stored after computing, so re-running pays nothing.
      Failed results are cached too and not retried unless ``retry_failed=True``.
    - Failed calculations stay in the dataset with status ``"failed"``, the error text and
      NaN labels. Every labelled structure gets ``method = labeler.method``; extras
      (e.g. ``interaction_energy``) become ``info_<key>`` variables.
    - ``only_missing=True`` keeps structures whose status is already ``"ok"`` unchanged.
    - Progress: a ``tqdm.auto`` bar unless ``show_progress=False``, and
      ``progress(done, total)`` after each structure. An exception raised by ``progress``
      propagates (the labelling stops; results computed so far are in the cache).
    - Input the labeler can never handle raises :class:`InputError` before any calculation.
    """
    from tqdm.auto import tqdm

    from nnp_lab.data.cache import cache_key
    from nnp_lab.data.dataset import Dataset

    if not isinstance(labeler, Labeler):
        labeler = make_labeler(labeler)  # type: ignore[arg-type]
    structures = ds.to_atoms()
    status = ds.status
    energy = ds.energy
    todo = [
        k
        for k in range(len(structures))
        if not (only_missing and status[k] == STATUS_OK and np.isfinite(energy[k]))
    ]
    for k in todo:
        try:
            labeler.check(structures[k])
        except InputError as exc:
            raise InputError(f"structure {k}: {exc}") from None
    old_extras = [x for x in str(ds.xr.attrs.get("label_extras", "")).split(",") if x]
    extras_keys = set(old_extras)
    store, owned = _open_cache(cache)
    total = len(structures)
    method = labeler.method
    done = 0
    try:
        with tqdm(total=total, desc=f"labelling ({method})", disable=not show_progress) as bar:
            todo_set = set(todo)
            for k, atoms in enumerate(structures):
                if k in todo_set:
                    result = None
                    key = cache_key(atoms, labeler) if store is not None else ""
                    if store is not None:
                        result = store.get(key)
                        if result is not None and retry_failed and result.status != STATUS_OK:
                            result = None
                    if result is None:
                        result = labeler.label(atoms)
                        if store is not None:
                            store.put(key, result, method=method)
                    _apply(atoms, result, method, old_extras)
                    extras_keys.update(result.extras)
                done += 1
                bar.update(1)
                if progress is not None:
                    progress(done, total)
    finally:
        if owned and store is not None:
            store.close()
    out = Dataset.from_atoms(structures, validate=False)
    attrs = {k: v for k, v in ds.xr.attrs.items() if k != "content_hash"}  # stale after labelling
    attrs.update(out.xr.attrs)
    attrs["label_extras"] = ",".join(sorted(extras_keys))
    out.xr.attrs.clear()
    out.xr.attrs.update(attrs)
    return out


def attach_result(atoms: Atoms, result: LabelResult, method: str) -> None:
    """Put ``result`` on ``atoms`` (in place): labels in a SinglePointCalculator, and
    ``info`` status/method/error and extras — what :meth:`Dataset.from_atoms` reads."""
    _apply(atoms, result, method, [])


def _apply(atoms: Atoms, result: LabelResult, method: str, old_extras: list[str]) -> None:
    """Replace the labels of ``atoms`` by ``result`` (in place)."""
    for key in ("status", "error", "method", *old_extras):
        atoms.info.pop(key, None)
    atoms.calc = None
    results = result.results()
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["status"] = STATUS_OK if result.ok else STATUS_FAILED
    atoms.info["method"] = method
    if not result.ok:
        atoms.info["error"] = result.error or "calculation failed (no reason given)"
    for key, value in result.extras.items():
        atoms.info[key] = float(value)
