"""Per-element multilayer perceptrons mapping descriptors to atomic energies."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "celu": lambda: nn.CELU(alpha=0.1),
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
}


def mlp(n_in: int, hidden: Sequence[int], activation: str) -> nn.Sequential:
    """``n_in → hidden… → 1`` with ``activation`` between layers (smooth, so forces are)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
        width = int(h)
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class ElementNetworks(nn.Module):
    """One MLP per species; atoms are grouped by species and evaluated together."""

    def __init__(
        self,
        species: Sequence[str],
        n_features: int,
        hidden: Sequence[int] | dict[str, Sequence[int]],
        activation: str = "celu",
    ):
        super().__init__()
        self.species = list(species)
        self.nets = nn.ModuleList(
            mlp(n_features, hidden[s] if isinstance(hidden, dict) else hidden, activation)
            for s in self.species
        )

    def forward(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic outputs (N,) for descriptors (N, F) and species indices (N,)."""
        out = features.new_zeros(features.shape[0])
        for s, net in enumerate(self.nets):
            idx = torch.nonzero(species == s).squeeze(-1)
            if idx.numel():
                out = out.index_put((idx,), net(features.index_select(0, idx)).squeeze(-1))
        return out
