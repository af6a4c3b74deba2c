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

    def feature_columns(self, present: tuple[int, ...]) -> list[int]:
        """Feature indices that can be non-zero when only species ``present`` occur:
        their radial blocks and the angular blocks of pairs of them (ascending)."""
        nr, sub = len(self.radial_shifts), self.angular_sublength
        keep = set(present)
        cols: list[int] = []
        for s in sorted(keep):
            cols += range(s * nr, (s + 1) * nr)
        slot = 0
        for a in range(self.num_species):
            for b in range(a, self.num_species):
                if a in keep and b in keep:
                    start = self.radial_length + slot * sub
                    cols += range(start, start + sub)
                slot += 1
        return cols
