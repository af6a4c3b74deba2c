"""Fused CPU backend for ANI-style AEVs: a C++/OpenMP extension compiled at first use.

The kernels (``csrc/aev_cpu.cpp``) run one OpenMP loop over centre atoms: the radial terms
loop over the atom's pairs, the angular terms over the unordered pairs of its angular
neighbours, with per-neighbour quantities in a small per-thread buffer — no per-triple
array is ever built. The backward pass (forces) is a closed-form kernel of its own with
the same structure; each pair belongs to one centre, so no thread writes another's data.

Derivatives:

* first derivative (forces): the fused backward kernel;
* second derivative (force training differentiates forces with respect to the weights,
  i.e. the backward with respect to ``grad_out`` and ``vectors``): supported through the
  torch reference (:func:`~nnp_lab.kernels.aev_torch.aev_torch` + autograd), so it is
  exactly as fast as the torch path; third and higher derivatives raise.

The extension is built with ``torch.utils.cpp_extension.load_inline`` into
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) under a name that hashes
its source, flags and the torch and Python versions, so editing the C++ or upgrading torch
rebuilds it. Flags: ``-O3 -fopenmp`` and no
``-ffast-math`` (the float32 results must match the reference to 1e-5 relative).

Concurrent builds are serialised by an ``fcntl`` lock on ``<name>.flock`` beside the build
folder, which the kernel releases when its holder dies. torch's own marker (a ``lock`` file
in the build folder, created and removed around every build *and* every up-to-date check)
outlives a process killed in between — a job or test worker stopped with SIGKILL — and then
makes every later build wait forever; holding the ``fcntl`` lock proves no live build owns
the marker, so it is removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from nnp_lab.kernels.aev_torch import aev_torch
from nnp_lab.kernels.layout import PairLayout
from nnp_lab.kernels.params import AEVParams

SOURCE_PATH = Path(__file__).with_name("csrc") / "aev_cpu.cpp"
CFLAGS = ("-O3", "-fopenmp")
LDFLAGS = ("-fopenmp",)

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_extension: ModuleType | None = None


def extension_name() -> str:
    """Module name of the extension: a hash of its source, flags, torch and Python versions
    (edits and upgrades rebuild it; venvs with different torch builds do not share it)."""
    digest = hashlib.sha256(SOURCE_PATH.read_bytes())
    digest.update(" ".join(CFLAGS + LDFLAGS).encode())
    digest.update(f"{torch.__version__} {sys.version_info[:2]}".encode())
    return f"nnp_lab_aev_cpu_{digest.hexdigest()[:16]}"


def build_directory() -> Path:
    """Where the extension is built: ``$TORCH_EXTENSIONS_DIR/<name>`` (torch's default root
    when the variable is unset)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / extension_name()


def load_extension(verbose: bool = False) -> ModuleType:
    """Compile (first call on a machine, ~30 s) or load the C++ extension.

    Raises:
        RuntimeError: when the compiler is missing or compilation fails.
    """
    global _extension
    with _lock:
        if _extension is None:
            from torch.utils.cpp_extension import load_inline

            folder = build_directory()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with open(folder.with_name(folder.name + ".flock"), "a") as guard:
                    fcntl.flock(guard, fcntl.LOCK_EX)  # released on close or death
                    stale = folder / "lock"
                    if stale.exists():  # no live build holds it: we hold the guard
                        _log.warning("removing %s left by a killed build", stale)
                        stale.unlink()
                    _extension = load_inline(
                        name=folder.name,
                        cpp_sources=[SOURCE_PATH.read_text()],
                        extra_cflags=list(CFLAGS),
                        extra_ldflags=list(LDFLAGS),
                        build_directory=str(folder),
                        verbose=verbose,
                    )
            except Exception as exc:
                raise RuntimeError(
                    f"could not build the 'cpu' AEV extension from {SOURCE_PATH} "
                    f"(needs a C++ compiler with OpenMP, e.g. g++): {exc}"
                ) from exc
        return _extension


def _args(layout: PairLayout, params: AEVParams) -> tuple[Any, ...]:
    """Layout tensors and hyperparameters in the order the C++ functions take them."""

    def idx(t: torch.Tensor) -> torch.Tensor:
        return t.to(device="cpu", dtype=torch.int64).contiguous()

    return (
        idx(layout.row_ptr),
        idx(layout.neighbor_species),
        idx(layout.angular),
        idx(layout.angular_row_ptr),
        int(params.num_species),
        float(params.radial_cutoff),
        float(params.radial_eta),
        [float(x) for x in params.radial_shifts],
        float(params.angular_cutoff),
        float(params.angular_eta),
        float(params.zeta),
        [float(x) for x in params.angular_shifts],
        [float(x) for x in params.sections],
    )


class _AEVBackward(torch.autograd.Function):
    """grad_vectors = J(vectors)^T grad_out by the fused kernel; differentiable once more
    (with respect to both inputs) through the torch reference."""

    @staticmethod
    def forward(ctx, grad_out, vectors, layout, params):  # type: ignore[override]
        ctx.save_for_backward(grad_out, vectors)
        ctx.layout, ctx.params = layout, params
        return load_extension().backward(grad_out.contiguous(), vectors, *_args(layout, params))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_grad):  # type: ignore[override]
        grad_out, vectors = ctx.saved_tensors
        need_go, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_go or need_v):
            return None, None, None, None
        with torch.enable_grad():
            v = vectors.detach().requires_grad_(True)
            go = grad_out.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(
                aev_torch(v, ctx.layout, ctx.params), v, go, create_graph=True
            )
            wanted = [t for t, need in ((go, need_go), (v, need_v)) if need]
            grads = list(torch.autograd.grad(g, wanted, grad_grad, allow_unused=True))
        d_go = grads.pop(0) if need_go else None
        d_v = grads.pop(0) if need_v else None
        if need_go and d_go is None:
            d_go = torch.zeros_like(grad_out)
        if need_v and d_v is None:
            d_v = torch.zeros_like(vectors)
        return d_go, d_v, None, None


class _AEVForward(torch.autograd.Function):
    """AEVs (N, F) by the fused kernel; backward by :class:`_AEVBackward`."""

    @staticmethod
    def forward(ctx, vectors, layout, params):  # type: ignore[override]
        ctx.save_for_backward(vectors)
        ctx.layout, ctx.params = layout, params
        return load_extension().forward(vectors, *_args(layout, params))

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (vectors,) = ctx.saved_tensors
        return _AEVBackward.apply(grad_out, vectors, ctx.layout, ctx.params), None, None


def aev_cpu_forward(
    vectors_sorted: torch.Tensor, layout: PairLayout, params: AEVParams
) -> torch.Tensor:
    """AEVs (N, F) by the fused kernel, without autograd (inference)."""
    _check(vectors_sorted)
    return load_extension().forward(vectors_sorted.detach().contiguous(), *_args(layout, params))


def aev_cpu_vjp(
    vectors_sorted: torch.Tensor, layout: PairLayout, params: AEVParams, grad_out: torch.Tensor
) -> torch.Tensor:
    """``Jᵀ grad_out[k]`` for K cotangents (K, N, F) at once: (P, K, 3), no autograd.

    The geometry of each pair and triple is evaluated once for all K (a committee's
    members), so K right-hand sides cost far less than K backward calls.
    """
    _check(vectors_sorted)
    if grad_out.dim() != 3:
        raise ValueError(f"grad_out must be (K, N, F), got {tuple(grad_out.shape)}")
    return load_extension().backward(
        grad_out.detach().to(vectors_sorted.dtype).contiguous(),
        vectors_sorted.detach().contiguous(),
        *_args(layout, params),
    )


def _check(vectors_sorted: torch.Tensor) -> None:
    if vectors_sorted.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"aev_cpu computes in float32 or float64, not {vectors_sorted.dtype}")
    if vectors_sorted.device.type != "cpu":
        raise ValueError(f"aev_cpu runs on the CPU, not on {vectors_sorted.device}")


def full_from_half(
    i: torch.Tensor, j: torch.Tensor, shifts: torch.Tensor, n_atoms: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full neighbor list grouped by centre from a half list, by an O(P) counting sort.

    Args: ``i, j`` (P,) int64, ``shifts`` (P, 3) int32 of the half list (each pair once).
    Returns ``(i, j, shifts, row_ptr)`` of the 2P directed pairs, ``i`` ascending.
    """
    fi, fj, fs, row_ptr = load_extension().full_from_half(
        i.contiguous(), j.contiguous(), shifts.contiguous(), int(n_atoms)
    )
    return fi, fj, fs, row_ptr


def aev_cpu(vectors_sorted: torch.Tensor, layout: PairLayout, params: AEVParams) -> torch.Tensor:
    """AEVs (N, F) of all atoms by the fused C++ kernels; same contract as ``aev_torch``.

    Args:
        vectors_sorted: (P, 3) float32/float64 CPU pair vectors ``r_j - r_i`` sorted as in
            ``layout`` (``vectors[layout.order]``); computed in their own dtype.
        layout: the CSR layout from :func:`~nnp_lab.kernels.layout.pair_layout`.
        params: descriptor hyperparameters.

    Differentiable: forces by a fused backward kernel; force training (second derivative)
    through the torch reference, as fast as the torch path.
    """
    _check(vectors_sorted)
    return _AEVForward.apply(vectors_sorted.contiguous(), layout, params)
