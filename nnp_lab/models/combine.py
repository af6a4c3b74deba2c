"""Exact sum of two potentials as one: E = E_a + E_b in a single, wider Potential.

Residual (delta) fitting trains a small correction network on top of a frozen base
network; deploying the pair as one :class:`Potential` keeps every consumer (calculator,
committee, MD engines, save/load) unchanged. Two per-element MLPs of the same depth on
the same standardised descriptor add up exactly to one MLP whose hidden layers are the
two side by side: block-diagonal weights, element-wise activation, output rows joined
with the second network's rows rescaled to the first one's energy scale.
"""

from __future__ import annotations

import torch

from nnp_lab.errors import InputError
from nnp_lab.models.potential import Potential


def _check_compatible(a: Potential, b: Potential) -> None:
    ca, cb = a.config, b.config
    if ca.species != cb.species or ca.descriptor != cb.descriptor:
        raise InputError("potentials to sum must share species and descriptor settings")
    if ca.activation != cb.activation:
        raise InputError(f"activations differ ({ca.activation} vs {cb.activation})")
    if isinstance(ca.hidden, dict) or isinstance(cb.hidden, dict):
        raise InputError("summing needs one hidden-layer list shared by all elements")
    if len(ca.hidden) != len(cb.hidden):
        raise InputError(f"networks differ in depth ({ca.hidden} vs {cb.hidden})")
    if ca.normalize_descriptors != cb.normalize_descriptors or not (
        torch.equal(a.feature_mean, b.feature_mean) and torch.equal(a.feature_std, b.feature_std)
    ):
        raise InputError("potentials to sum must standardise the descriptor identically")


@torch.no_grad()
def summed_potential(a: Potential, b: Potential) -> Potential:
    """One Potential whose energy (hence forces, stress) is ``a``'s plus ``b``'s.

    Both must share species, descriptor, activation, network depth and descriptor
    standardisation; the result's hidden widths are the sums of theirs.
    """
    _check_compatible(a, b)
    config = a.config.model_copy(
        update={"hidden": [int(x) + int(y) for x, y in zip(a.config.hidden, b.config.hidden)]}
    )
    out = Potential(config=config).to(dtype=a.dtype, device=a.device)
    for buf in ("feature_mean", "feature_std", "energy_scale", "prepared"):
        getattr(out, buf).copy_(getattr(a, buf))
    out.self_energies.copy_(a.self_energies + b.self_energies.to(a.self_energies))
    ratio = float(b.energy_scale) / float(a.energy_scale)
    for net_out, net_a, net_b in zip(out.networks.nets, a.networks.nets, b.networks.nets):
        linears = [m for m in net_out if isinstance(m, torch.nn.Linear)]
        la = [m for m in net_a if isinstance(m, torch.nn.Linear)]
        lb = [m for m in net_b if isinstance(m, torch.nn.Linear)]
        for k, (lo, x, y) in enumerate(zip(linears, la, lb)):
            if k == len(linears) - 1:  # output: join the rows, rescale b to a's energy scale
                lo.weight.copy_(torch.cat([x.weight, y.weight * ratio], dim=1))
                lo.bias.copy_(x.bias + y.bias * ratio)
                continue
            # input layer: both read the same descriptor; hidden layers: block-diagonal
            w = torch.cat([x.weight, y.weight]) if k == 0 else torch.block_diag(x.weight, y.weight)
            lo.weight.copy_(w)
            lo.bias.copy_(torch.cat([x.bias, y.bias]))
    out.metadata = {**a.metadata, "summed_from": [a.config.hidden, b.config.hidden]}
    return out
