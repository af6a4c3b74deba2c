"""Hyperparameters of the ANI descriptor as a plain, hashable bundle shared by all backends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AEVParams:
    """Everything a descriptor kernel needs besides coordinates (lengths in Å, angles in rad).

    Output layout (length :attr:`num_features`): radial block ``[species s][radial shift r]``
    followed by angular block ``[species pair p][angular shift k][section z]`` with species
    pairs in upper-triangle order (0,0), (0,1), …, (1,1), … .
    """

    num_species: int
    radial_cutoff: float
    radial_eta: float
    radial_shifts: tuple[float, ...]
    angular_cutoff: float
    angular_eta: float
    zeta: float
    angular_shifts: tuple[float, ...]
    sections: tuple[float, ...]

    @property
    def num_pairs(self) -> int:
        return self.num_species * (self.num_species + 1) // 2

    @property
    def radial_length(self) -> int:
        return self.num_species * len(self.radial_shifts)

    @property
    def angular_sublength(self) -> int:
        """Features per species pair: angular shifts × sections."""
        return len(self.angular_shifts) * len(self.sections)

    @property
    def num_features(self) -> int:
        return self.radial_length + self.num_pairs * self.angular_sublength
