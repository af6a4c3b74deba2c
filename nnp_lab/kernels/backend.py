"""Descriptor backends behind one call, and how ``backend="auto"`` chooses.

* ``torch``  — reference ops (:mod:`nnp_lab.kernels.aev_torch`); any derivative order.
* ``cpu``    — fused C++/OpenMP loops over each atom's pairs and neighbour pairs, compiled
  on first use (:mod:`nnp_lab.kernels.aev_cpu`).
* ``triton`` — fused Triton kernels (:mod:`nnp_lab.kernels.aev_triton`); CUDA, or the CPU
  interpreter when ``TRITON_INTERPRET=1`` (for tests).

``auto`` picks ``triton`` on CUDA and ``cpu`` on the CPU (the fastest measured there, see
docs/performance.md), falling back to ``torch`` when a backend cannot be used.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch

from nnp_lab.kernels.aev_torch import aev_torch
from nnp_lab.kernels.layout import PairLayout, centre_layout
from nnp_lab.kernels.params import AEVParams

BACKENDS = ("auto", "torch", "cpu", "triton")

AEVFunction = Callable[[torch.Tensor, PairLayout, AEVParams], torch.Tensor]
Pullback = Callable[[torch.Tensor], torch.Tensor]
"""Maps cotangents ``∂E_k/∂G`` (K, C, F) to ``∂E_k/∂vectors`` (P, K, 3) (input pair order)."""


@functools.cache
def _loader(name: str) -> AEVFunction | None:
    """The backend's function, or None if it cannot run here (import/compile failure)."""
    try:
        if name == "torch":
            return aev_torch
        if name == "cpu":
            from nnp_lab.kernels.aev_cpu import aev_cpu, load_extension

            load_extension()
            return aev_cpu
        if name == "triton":
            from nnp_lab.kernels.aev_triton import aev_triton

            return aev_triton
    except Exception:  # an unavailable backend: auto falls back
        return None
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")


def triton_usable(device: torch.device) -> bool:
    """Triton runs on CUDA, or anywhere under the interpreter (``TRITON_INTERPRET=1``)."""
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def resolve_backend(name: str, device: torch.device) -> str:
    """The concrete backend ``name`` stands for on ``device`` (raises if unusable)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    if name == "auto":
        order = ("triton", "torch") if device.type == "cuda" else ("cpu", "torch")
        for cand in order:
            if cand == "triton" and not triton_usable(device):
                continue
            if _loader(cand) is not None:
                return cand
        return "torch"
    if name == "triton" and not triton_usable(device):
        raise ValueError("backend 'triton' needs a CUDA device (or TRITON_INTERPRET=1 for tests)")
    if name == "cpu" and device.type != "cpu":
        raise ValueError(f"backend 'cpu' runs on the CPU only, not on {device}")
    if _loader(name) is None:
        raise RuntimeError(f"backend {name!r} is not available here (import or compilation failed)")
    return name


def compute_aev(
    species: torch.Tensor,
    vectors: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    params: AEVParams,
    backend: str = "auto",
) -> torch.Tensor:
    """AEVs (N, F) of all atoms from a full neighbor list (``vectors = r_j - r_i``).

    Differentiable with respect to ``vectors`` (forces; force training — see each backend
    for how higher derivatives are done).
    """
    return centre_aev(int(species.shape[0]), i, j, species[j], vectors, params, backend)


def centre_aev(
    num_centres: int,
    i: torch.Tensor,
    j: torch.Tensor,
    neighbor_species: torch.Tensor,
    vectors: torch.Tensor,
    params: AEVParams,
    backend: str = "auto",
) -> torch.Tensor:
    """AEVs (num_centres, F) of centres ``0..num_centres-1`` from their pairs (``i`` local)."""
    layout = centre_layout(
        num_centres, i, j, neighbor_species, vectors, params.radial_cutoff, params.angular_cutoff
    )
    fn = _loader(resolve_backend(backend, vectors.device))
    assert fn is not None
    return fn(layout.sort(vectors), layout, params)


def centre_aev_pullback(
    num_centres: int,
    i: torch.Tensor,
    j: torch.Tensor,
    neighbor_species: torch.Tensor,
    vectors: torch.Tensor,
    params: AEVParams,
    backend: str = "auto",
) -> tuple[torch.Tensor, Pullback]:
    """AEVs (C, F) without a graph, and the pullback of K cotangents at once (inference).

    The ``cpu`` backend runs one fused backward for all K right-hand sides (the geometry
    of every pair and triple is computed once); the others call autograd K times.
    """
    layout = centre_layout(
        num_centres, i, j, neighbor_species, vectors, params.radial_cutoff, params.angular_cutoff
    )
    name = resolve_backend(backend, vectors.device)
    v = layout.sort(vectors.detach())
    n_pairs = vectors.shape[0]

    def to_input_order(g: torch.Tensor) -> torch.Tensor:
        if layout.identity:
            return g
        out = g.new_zeros((n_pairs, *g.shape[1:]))
        out[layout.order] = g
        return out

    if name == "cpu":
        from nnp_lab.kernels.aev_cpu import aev_cpu_forward, aev_cpu_vjp

        g = aev_cpu_forward(v, layout, params)
        return g, lambda cot: to_input_order(aev_cpu_vjp(v, layout, params, cot))
    fn = _loader(name)
    assert fn is not None
    v.requires_grad_(True)
    with torch.enable_grad():
        g = fn(v, layout, params)

    def pull(cot: torch.Tensor) -> torch.Tensor:
        k = cot.shape[0]
        if not g.requires_grad:  # no pairs: nothing depends on the vectors
            return to_input_order(v.detach().new_zeros((v.shape[0], k, 3)))
        grads = [torch.autograd.grad(g, v, cot[m], retain_graph=m < k - 1)[0] for m in range(k)]
        return to_input_order(torch.stack(grads, dim=1))

    return g.detach(), pull
