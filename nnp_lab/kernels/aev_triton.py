"""Fused Triton kernels for ANI-style AEVs (forward and closed-form backward).

Program mapping: one program per centre atom ``a``. It owns the sorted radial pairs
``row_ptr[a]:row_ptr[a+1]`` and the angular neighbours ``angular[angular_row_ptr[a]:...]``:

* radial: pairs in chunks of ``block_radial``; the (chunk × shifts) terms are reduced over
  the chunk per neighbour species into an (S, R) register accumulator.
* angular: a scalar loop over the atom's angular neighbours j, and, vectorised in chunks of
  ``block_angular``, over its partners k > j (each unordered neighbour pair once). The
  (k × shifts·sections) terms are summed per species of k, then added to an (S, S, K·Z)
  register accumulator at (min(s_j, s_k), max(s_j, s_k)).

Each output row is written exactly once (no atomics, no zero fill, no per-triple array in
memory). The backward kernel has the same mapping: every pair belongs to one centre, so
pair gradients are plain stores — the radial part into a (Pr, 3) buffer and the angular
part into a (Pa, 3) buffer added with one ``index_add`` (a program's own stores need not be
visible to its later loads without a barrier, so the two are kept apart).

Only ``tl.*`` math is used (no libdevice): ``cos(θ - θ_z)`` comes from the identity
``cos θ cos θ_z + sin θ sin θ_z`` with ``cos θ = 0.95 c``, ``sin θ = sqrt(1 - (0.95 c)²)`` (never
zero since |0.95 c| < 1), and ``x^ζ = exp(ζ log x)`` guarded at x = 0. Constants that are not
exact in float32 (π/R_c, 0.95, the 1e-10 clamp) travel in a small tensor of the input dtype
so float64 results match the float64 reference.

Autograd: :class:`torch.autograd.Function` (not ``torch.library.triton_op``): the first
derivative is the Triton backward kernel, and double backward (force training) is
supported through the torch reference — the backward is itself a Function whose backward
recomputes ``g(grad_out, v) = ∂(aev_torch(v)·grad_out)/∂v`` and differentiates it with
``torch.func.vjp`` (w.r.t. grad_out and v as independent inputs; the result stays
differentiable, so third derivatives work as well). A Function keeps that composition
simple and runs under the Triton interpreter (``torch.compile`` over a ``triton_op`` does
not); the price is a graph break under ``torch.compile``.

The ``@triton.jit`` decoration happens lazily, on first launch, and is cached per value of
``TRITON_INTERPRET``: whether the interpreter is used is decided when a function is
decorated, so this module works whatever the import order relative to that variable.
"""

import math
import os
from typing import Any

import torch
import triton
import triton.language as tl

from nnp_lab.kernels.aev_torch import aev_torch
from nnp_lab.kernels.layout import PairLayout
from nnp_lab.kernels.params import AEVParams

# Kernels avoid the ``@triton.jit`` helpers of triton.language (``tl.sum``, ``tl.zeros``):
# those are decorated when triton is imported, so they only interpret if TRITON_INTERPRET was
# set *before* that import. Builtins are patched by the interpreter at launch instead, so
# sums are ``tl.reduce(x, axis, _sum_combine)`` (the interpreter recognises this combine
# function and sums with numpy; compiled, it is what ``tl.sum`` does for floats) and zeros
# are ``tl.full(shape, 0.0, dtype)``.
_sum_combine = tl.standard._sum_combine

DEFAULT_BLOCK_RADIAL = 32
"""Radial pairs per chunk (GPU default)."""
MAX_BLOCK_ELEMENTS = 1 << 20
"""Largest tile (elements) a kernel may build; the interpreter refuses bigger blocks."""

# slots of the per-call constant tensor (input dtype)
_RC_R, _ETA_R, _PI_RC_R, _RC_A, _ETA_A, _PI_RC_A, _ZETA, _C95, _EPS = range(9)


def _fwd_kernel(
    vec_ptr,
    species_ptr,
    row_ptr,
    ang_ptr,
    ang_row_ptr,
    prm_ptr,
    rshift_ptr,
    ashift_ptr,
    csec_ptr,
    ssec_ptr,
    out_ptr,
    NS,
    NR,
    NK,
    NZ,
    F,
    S_PAD: tl.constexpr,
    R_PAD: tl.constexpr,
    K_PAD: tl.constexpr,
    Z_PAD: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_A: tl.constexpr,
):
    """AEV row of atom ``program_id``: radial then angular features, stored once."""
    a = tl.program_id(0).to(tl.int64)
    out_row = out_ptr + a * F
    dtype = out_ptr.dtype.element_ty
    rc_r = tl.load(prm_ptr + 0)
    eta_r = tl.load(prm_ptr + 1)
    pi_rc_r = tl.load(prm_ptr + 2)
    rc_a = tl.load(prm_ptr + 3)
    eta_a = tl.load(prm_ptr + 4)
    pi_rc_a = tl.load(prm_ptr + 5)
    zeta = tl.load(prm_ptr + 6)
    c95k = tl.load(prm_ptr + 7)
    eps = tl.load(prm_ptr + 8)

    s_idx = tl.arange(0, S_PAD)
    r_idx = tl.arange(0, R_PAD)
    rshift = tl.load(rshift_ptr + r_idx, mask=r_idx < NR, other=0.0)

    # ---- radial: (S, R) accumulator over chunks of pairs
    acc_r = tl.full([S_PAD, R_PAD], 0.0, dtype)
    p_lo = tl.load(row_ptr + a)
    p_hi = tl.load(row_ptr + a + 1)
    offs_r = tl.arange(0, BLOCK_R)
    for p0 in range(p_lo, p_hi, BLOCK_R):
        p = p0 + offs_r
        m = p < p_hi
        x = tl.load(vec_ptr + p * 3 + 0, mask=m, other=0.0)
        y = tl.load(vec_ptr + p * 3 + 1, mask=m, other=0.0)
        z = tl.load(vec_ptr + p * 3 + 2, mask=m, other=0.0)
        sp = tl.load(species_ptr + p, mask=m, other=-1)
        d = tl.sqrt(x * x + y * y + z * z)
        fc = tl.where(d < rc_r, 0.5 * tl.cos(d * pi_rc_r) + 0.5, 0.0)
        diff = d[:, None] - rshift[None, :]
        term = 0.25 * tl.exp(-eta_r * diff * diff) * fc[:, None]  # (BLOCK_R, R_PAD)
        hit = sp[None, :, None] == s_idx[:, None, None]  # (S_PAD, BLOCK_R, 1)
        acc_r += tl.reduce(tl.where(hit, term[None, :, :], 0.0), 1, _sum_combine)
    r_mask = (s_idx[:, None] < NS) & (r_idx[None, :] < NR)
    tl.store(out_row + s_idx[:, None] * NR + r_idx[None, :], acc_r, mask=r_mask)

    # ---- angular: (S, S, K*Z) accumulator, upper triangle used
    k_idx = tl.arange(0, K_PAD)
    z_idx = tl.arange(0, Z_PAD)
    ashift = tl.load(ashift_ptr + k_idx, mask=k_idx < NK, other=0.0)
    csec = tl.load(csec_ptr + z_idx, mask=z_idx < NZ, other=0.0)
    ssec = tl.load(ssec_ptr + z_idx, mask=z_idx < NZ, other=0.0)
    rows = s_idx[:, None, None]
    cols = s_idx[None, :, None]
    acc_a = tl.full([S_PAD, S_PAD, K_PAD * Z_PAD], 0.0, dtype)
    q_lo = tl.load(ang_row_ptr + a)
    q_hi = tl.load(ang_row_ptr + a + 1)
    offs_a = tl.arange(0, BLOCK_A)
    for qj in range(q_lo, q_hi):
        pj = tl.load(ang_ptr + qj)
        xj = tl.load(vec_ptr + pj * 3 + 0)
        yj = tl.load(vec_ptr + pj * 3 + 1)
        zj = tl.load(vec_ptr + pj * 3 + 2)
        sj = tl.load(species_ptr + pj)
        dj = tl.sqrt(xj * xj + yj * yj + zj * zj)
        fcj = tl.where(dj < rc_a, 0.5 * tl.cos(dj * pi_rc_a) + 0.5, 0.0)
        by_species = tl.full([S_PAD, K_PAD * Z_PAD], 0.0, dtype)
        for q0 in range(qj + 1, q_hi, BLOCK_A):
            q = q0 + offs_a
            m = q < q_hi
            pk = tl.load(ang_ptr + q, mask=m, other=0)
            xk = tl.load(vec_ptr + pk * 3 + 0, mask=m, other=0.0)
            yk = tl.load(vec_ptr + pk * 3 + 1, mask=m, other=0.0)
            zk = tl.load(vec_ptr + pk * 3 + 2, mask=m, other=0.0)
            sk = tl.load(species_ptr + pk, mask=m, other=-1)
            dk = tl.sqrt(xk * xk + yk * yk + zk * zk)
            fck = tl.where(dk < rc_a, 0.5 * tl.cos(dk * pi_rc_a) + 0.5, 0.0)
            cos = (xj * xk + yj * yk + zj * zk) / tl.maximum(dj * dk, eps)
            cos_t = c95k * cos
            sin_t = tl.sqrt(1.0 - cos_t * cos_t)
            base = 0.5 * (1.0 + cos_t[:, None] * csec[None, :] + sin_t[:, None] * ssec[None, :])
            safe = tl.where(base > 0.0, base, 1.0)
            ang = tl.where(base > 0.0, 2.0 * tl.exp(zeta * tl.log(safe)), 0.0)  # (BLOCK_A, Z)
            diff = 0.5 * (dj + dk)[:, None] - ashift[None, :]
            rad = tl.exp(-eta_a * diff * diff) * (fcj * fck)[:, None]  # (BLOCK_A, K)
            t = tl.reshape(rad[:, :, None] * ang[:, None, :], [BLOCK_A, K_PAD * Z_PAD])
            hit = sk[None, :, None] == s_idx[:, None, None]  # (S_PAD, BLOCK_A, 1)
            by_species += tl.reduce(tl.where(hit, t[None, :, :], 0.0), 1, _sum_combine)
        # species pair (sj, s) -> slot (min, max) of the upper triangle
        acc_a += tl.where((rows == sj) & (cols >= sj), by_species[None, :, :], 0.0)
        acc_a += tl.where((cols == sj) & (rows < sj), by_species[:, None, :], 0.0)

    f = tl.arange(0, K_PAD * Z_PAD)
    fk = (f // Z_PAD)[None, None, :]
    fz = (f % Z_PAD)[None, None, :]
    slot = rows * NS - (rows * (rows - 1)) // 2 + (cols - rows)
    a_off = NS * NR + slot * (NK * NZ) + fk * NZ + fz
    a_mask = (rows <= cols) & (cols < NS) & (fk < NK) & (fz < NZ)
    tl.store(out_row + a_off, acc_a, mask=a_mask)


def _bwd_kernel(
    vec_ptr,
    species_ptr,
    row_ptr,
    ang_ptr,
    ang_row_ptr,
    prm_ptr,
    rshift_ptr,
    ashift_ptr,
    csec_ptr,
    ssec_ptr,
    gout_ptr,
    grad_r_ptr,
    grad_a_ptr,
    NS,
    NR,
    NK,
    NZ,
    F,
    S_PAD: tl.constexpr,
    R_PAD: tl.constexpr,
    K_PAD: tl.constexpr,
    Z_PAD: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_A: tl.constexpr,
):
    """Closed-form vector gradients of atom ``program_id``'s pairs given ``grad_out``."""
    a = tl.program_id(0).to(tl.int64)
    g_row = gout_ptr + a * F
    rc_r = tl.load(prm_ptr + 0)
    eta_r = tl.load(prm_ptr + 1)
    pi_rc_r = tl.load(prm_ptr + 2)
    rc_a = tl.load(prm_ptr + 3)
    eta_a = tl.load(prm_ptr + 4)
    pi_rc_a = tl.load(prm_ptr + 5)
    zeta = tl.load(prm_ptr + 6)
    c95k = tl.load(prm_ptr + 7)
    eps = tl.load(prm_ptr + 8)

    # ---- radial: d/dv of Σ_r G[s_p, r] ¼ exp(-η (d - R_r)²) f_c(d)
    r_idx = tl.arange(0, R_PAD)
    r_ok = r_idx < NR
    rshift = tl.load(rshift_ptr + r_idx, mask=r_ok, other=0.0)
    p_lo = tl.load(row_ptr + a)
    p_hi = tl.load(row_ptr + a + 1)
    offs_r = tl.arange(0, BLOCK_R)
    for p0 in range(p_lo, p_hi, BLOCK_R):
        p = p0 + offs_r
        m = p < p_hi
        x = tl.load(vec_ptr + p * 3 + 0, mask=m, other=0.0)
        y = tl.load(vec_ptr + p * 3 + 1, mask=m, other=0.0)
        z = tl.load(vec_ptr + p * 3 + 2, mask=m, other=0.0)
        sp = tl.load(species_ptr + p, mask=m, other=0)
        g = tl.load(
            g_row + sp[:, None] * NR + r_idx[None, :], mask=m[:, None] & r_ok[None, :], other=0.0
        )
        d = tl.sqrt(x * x + y * y + z * z)
        inside = d < rc_r
        fc = tl.where(inside, 0.5 * tl.cos(d * pi_rc_r) + 0.5, 0.0)
        dfc = tl.where(inside, -0.5 * pi_rc_r * tl.sin(d * pi_rc_r), 0.0)
        diff = d[:, None] - rshift[None, :]
        e = tl.exp(-eta_r * diff * diff)
        dterm = 0.25 * e * (dfc[:, None] - 2.0 * eta_r * diff * fc[:, None])
        gd = tl.reduce(g * dterm, 1, _sum_combine)
        scale = tl.where(d > 0.0, gd / tl.where(d > 0.0, d, 1.0), 0.0)
        tl.store(grad_r_ptr + p * 3 + 0, scale * x, mask=m)
        tl.store(grad_r_ptr + p * 3 + 1, scale * y, mask=m)
        tl.store(grad_r_ptr + p * 3 + 2, scale * z, mask=m)

    # ---- angular: for each neighbour j, Σ over partners k ≠ j of G[pair] · ∂T_jk/∂v_j
    k_idx = tl.arange(0, K_PAD)
    z_idx = tl.arange(0, Z_PAD)
    k_ok = k_idx < NK
    z_ok = z_idx < NZ
    ashift = tl.load(ashift_ptr + k_idx, mask=k_ok, other=0.0)
    csec = tl.load(csec_ptr + z_idx, mask=z_ok, other=0.0)
    ssec = tl.load(ssec_ptr + z_idx, mask=z_ok, other=0.0)
    g_off = k_idx[None, :, None] * NZ + z_idx[None, None, :]
    g_ok = k_ok[None, :, None] & z_ok[None, None, :]
    q_lo = tl.load(ang_row_ptr + a)
    q_hi = tl.load(ang_row_ptr + a + 1)
    offs_a = tl.arange(0, BLOCK_A)
    for qj in range(q_lo, q_hi):
        pj = tl.load(ang_ptr + qj)
        xj = tl.load(vec_ptr + pj * 3 + 0)
        yj = tl.load(vec_ptr + pj * 3 + 1)
        zj = tl.load(vec_ptr + pj * 3 + 2)
        sj = tl.load(species_ptr + pj)
        dj = tl.sqrt(xj * xj + yj * yj + zj * zj)
        inv_dj = tl.where(dj > 0.0, 1.0 / tl.where(dj > 0.0, dj, 1.0), 0.0)
        in_j = dj < rc_a
        fcj = tl.where(in_j, 0.5 * tl.cos(dj * pi_rc_a) + 0.5, 0.0)
        dfcj = tl.where(in_j, -0.5 * pi_rc_a * tl.sin(dj * pi_rc_a), 0.0)
        acc_x = tl.full([BLOCK_A], 0.0, xj.dtype)
        acc_y = tl.full([BLOCK_A], 0.0, xj.dtype)
        acc_z = tl.full([BLOCK_A], 0.0, xj.dtype)
        for q0 in range(q_lo, q_hi, BLOCK_A):
            q = q0 + offs_a
            m = (q < q_hi) & (q != qj)
            pk = tl.load(ang_ptr + q, mask=m, other=0)
            xk = tl.load(vec_ptr + pk * 3 + 0, mask=m, other=0.0)
            yk = tl.load(vec_ptr + pk * 3 + 1, mask=m, other=0.0)
            zk = tl.load(vec_ptr + pk * 3 + 2, mask=m, other=0.0)
            sk = tl.load(species_ptr + pk, mask=m, other=0)
            lo = tl.minimum(sk, sj)
            hi = tl.maximum(sk, sj)
            slot = lo * NS - (lo * (lo - 1)) // 2 + (hi - lo)
            g = tl.load(
                g_row + NS * NR + slot[:, None, None] * (NK * NZ) + g_off,
                mask=m[:, None, None] & g_ok,
                other=0.0,
            )  # (BLOCK_A, K_PAD, Z_PAD)
            dk = tl.sqrt(xk * xk + yk * yk + zk * zk)
            fck = tl.where(dk < rc_a, 0.5 * tl.cos(dk * pi_rc_a) + 0.5, 0.0)
            prod = dj * dk
            den = tl.maximum(prod, eps)
            cos = (xj * xk + yj * yk + zj * zk) / den
            cos_t = c95k * cos
            sin_t = tl.sqrt(1.0 - cos_t * cos_t)
            base = 0.5 * (1.0 + cos_t[:, None] * csec[None, :] + sin_t[:, None] * ssec[None, :])
            pos = base > 0.0
            safe = tl.where(pos, base, 1.0)
            pw = tl.where(pos, tl.exp(zeta * tl.log(safe)), 0.0)
            ang = 2.0 * pw  # (BLOCK_A, Z)
            dbase = 0.5 * c95k * (csec[None, :] - (cos_t / sin_t)[:, None] * ssec[None, :])
            dang = tl.where(pos, 2.0 * zeta * pw / safe, 0.0) * dbase  # ∂ang/∂cos
            diff = 0.5 * (dj + dk)[:, None] - ashift[None, :]
            e = tl.exp(-eta_a * diff * diff)
            rad = e * (fcj * fck)[:, None]  # (BLOCK_A, K)
            drad = e * ((dfcj * fck)[:, None] - eta_a * diff * (fcj * fck)[:, None])  # ∂/∂d_j
            gr = tl.reduce(g * rad[:, :, None], 1, _sum_combine)  # (BLOCK_A, Z)
            ga = tl.reduce(g * ang[:, None, :], 2, _sum_combine)  # (BLOCK_A, K)
            d_dj = tl.reduce(ga * drad, 1, _sum_combine)  # ∂/∂d_j
            d_cos = tl.reduce(gr * dang, 1, _sum_combine)  # ∂/∂cos
            inv_den = 1.0 / den
            # ∂cos/∂v_j = v_k/den - cos d_k v_j/(d_j den)  (clamp inactive)
            coef_j = d_dj * inv_dj - tl.where(prod >= eps, d_cos * cos * dk * inv_dj * inv_den, 0.0)
            coef_k = d_cos * inv_den
            acc_x += tl.where(m, coef_j * xj + coef_k * xk, 0.0)
            acc_y += tl.where(m, coef_j * yj + coef_k * yk, 0.0)
            acc_z += tl.where(m, coef_j * zj + coef_k * zk, 0.0)
        tl.store(grad_a_ptr + qj * 3 + 0, tl.reduce(acc_x, 0, _sum_combine))
        tl.store(grad_a_ptr + qj * 3 + 1, tl.reduce(acc_y, 0, _sum_combine))
        tl.store(grad_a_ptr + qj * 3 + 2, tl.reduce(acc_z, 0, _sum_combine))


_KERNELS = {"fwd": _fwd_kernel, "bwd": _bwd_kernel}
_JITTED: dict[tuple[str, bool], Any] = {}


def interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for the interpreter (read now, not at import)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:  # the very switch ``triton.jit`` reads when decorating
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _kernel(name: str) -> Any:
    """The jitted kernel ``name``, decorated for the current interpreter setting."""
    key = (name, interpreting())
    if key not in _JITTED:
        _JITTED[key] = triton.jit(_KERNELS[name])
    return _JITTED[key]


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def default_block_angular(max_angular: int) -> int:
    """Partners per chunk: the next power of two of ``max_angular``, clamped to [16, 32]
    (the forward's per-species tile is S_pad × block × K·Z registers)."""
    return min(32, max(16, _pow2(max_angular)))


class _Launch:
    """Everything both kernels need besides the tensors that change per call."""

    def __init__(
        self,
        vectors: torch.Tensor,
        layout: PairLayout,
        params: AEVParams,
        block_radial: int,
        block_angular: int | None,
        num_warps: int,
    ):
        if vectors.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"aev_triton supports float32 and float64, got {vectors.dtype}")
        if vectors.device.type != "cuda" and not interpreting():
            raise RuntimeError(
                f"aev_triton needs CUDA tensors (got {vectors.device}); on the CPU it runs "
                "only under the Triton interpreter (TRITON_INTERPRET=1, for tests) — use the "
                "'cpu' or 'torch' backend instead"
            )
        if vectors.dim() != 2 or vectors.shape[-1] != 3:
            raise ValueError(f"vectors must be (Pr, 3), got {tuple(vectors.shape)}")
        if vectors.shape[0] != layout.center.shape[0]:
            raise ValueError("vectors must be sorted as in layout (vectors[layout.order])")
        self.block_r = int(block_radial)
        self.block_a = (
            default_block_angular(layout.max_angular) if block_angular is None else block_angular
        )
        self.s_pad = _pow2(params.num_species)
        self.r_pad = _pow2(len(params.radial_shifts))
        self.k_pad = _pow2(len(params.angular_shifts))
        self.z_pad = _pow2(len(params.sections))
        for name, b in (("block_radial", self.block_r), ("block_angular", self.block_a)):
            if b < 1 or b & (b - 1):
                raise ValueError(f"{name} must be a power of two, got {b}")
        biggest = max(
            self.s_pad * self.block_r * self.r_pad,
            self.s_pad * self.block_a * self.k_pad * self.z_pad,
            self.s_pad * self.s_pad * self.k_pad * self.z_pad,
        )
        if biggest > MAX_BLOCK_ELEMENTS:
            raise ValueError(f"block sizes give a {biggest}-element tile (> {MAX_BLOCK_ELEMENTS})")
        self.num_warps = num_warps
        dev, dt = vectors.device, vectors.dtype

        def vec(values: list[float] | tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64).to(device=dev, dtype=dt)

        sections = torch.tensor(params.sections, dtype=torch.float64)
        self.prm = vec(
            [
                params.radial_cutoff,
                params.radial_eta,
                math.pi / params.radial_cutoff,
                params.angular_cutoff,
                params.angular_eta,
                math.pi / params.angular_cutoff,
                params.zeta,
                0.95,
                1e-10,
            ]
        )
        self.rshift = vec(params.radial_shifts)
        self.ashift = vec(params.angular_shifts)
        self.csec = torch.cos(sections).to(device=dev, dtype=dt)
        self.ssec = torch.sin(sections).to(device=dev, dtype=dt)
        self.layout = layout
        self.params = params
        self.n_atoms = layout.num_atoms
        self.species = layout.neighbor_species.contiguous()
        self.row_ptr = layout.row_ptr.contiguous()
        self.angular = layout.angular.contiguous()
        self.ang_row_ptr = layout.angular_row_ptr.contiguous()

    def common(self, vectors: torch.Tensor) -> tuple[list[Any], dict[str, Any]]:
        args: list[Any] = [
            vectors,
            self.species,
            self.row_ptr,
            self.angular,
            self.ang_row_ptr,
            self.prm,
            self.rshift,
            self.ashift,
            self.csec,
            self.ssec,
        ]
        p = self.params
        tail = dict(
            NS=p.num_species,
            NR=len(p.radial_shifts),
            NK=len(p.angular_shifts),
            NZ=len(p.sections),
            F=p.num_features,
            S_PAD=self.s_pad,
            R_PAD=self.r_pad,
            K_PAD=self.k_pad,
            Z_PAD=self.z_pad,
            BLOCK_R=self.block_r,
            BLOCK_A=self.block_a,
            num_warps=self.num_warps,
        )
        return args, tail

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        out = vectors.new_empty((self.n_atoms, self.params.num_features))
        if self.n_atoms == 0:
            return out
        args, tail = self.common(vectors.contiguous())
        _kernel("fwd")[(self.n_atoms,)](*args, out, **tail)
        return out

    def backward(self, vectors: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        grad = torch.zeros_like(vectors)
        if self.n_atoms == 0 or vectors.shape[0] == 0:
            return grad
        grad_ang = vectors.new_zeros((self.angular.shape[0], 3))
        args, tail = self.common(vectors.contiguous())
        gout = grad_out.to(vectors.dtype).contiguous()
        _kernel("bwd")[(self.n_atoms,)](*args, gout, grad, grad_ang, **tail)
        if grad_ang.shape[0]:
            grad.index_add_(0, self.angular, grad_ang)
        return grad


class _AEVTritonBackward(torch.autograd.Function):
    """grad_vectors = Jᵀ grad_out by the Triton kernel; its own backward uses aev_torch."""

    @staticmethod
    def forward(
        ctx: Any, grad_out: torch.Tensor, vectors: torch.Tensor, launch: _Launch
    ) -> torch.Tensor:
        ctx.save_for_backward(grad_out, vectors)
        ctx.launch = launch
        return launch.backward(vectors, grad_out)

    @staticmethod
    def backward(ctx: Any, gg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        grad_out, vectors = ctx.saved_tensors
        layout, params = ctx.launch.layout, ctx.launch.params

        def first_derivative(go: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            _, pull = torch.func.vjp(lambda x: aev_torch(x, layout, params), v)
            return pull(go)[0]

        # torch.func keeps grad_out and vectors independent (plain autograd.grad w.r.t.
        # vectors would also run through grad_out's own history) and its results stay
        # differentiable by ordinary autograd, so third derivatives work too
        _, pull = torch.func.vjp(first_derivative, grad_out, vectors)
        d_go, d_v = pull(gg)
        return d_go, d_v, None


class _AEVTriton(torch.autograd.Function):
    """AEVs by the fused forward kernel; backward by :class:`_AEVTritonBackward`."""

    @staticmethod
    def forward(ctx: Any, vectors: torch.Tensor, launch: _Launch) -> torch.Tensor:
        ctx.save_for_backward(vectors)
        ctx.launch = launch
        return launch.forward(vectors)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (vectors,) = ctx.saved_tensors
        return _AEVTritonBackward.apply(grad_out, vectors, ctx.launch), None


def aev_triton(
    vectors: torch.Tensor,
    layout: PairLayout,
    params: AEVParams,
    block_radial: int = DEFAULT_BLOCK_RADIAL,
    block_angular: int | None = None,
    num_warps: int = 4,
) -> torch.Tensor:
    """AEVs (N, F) from pair vectors sorted as in ``layout`` (``vectors[layout.order]``).

    Same result as :func:`~nnp_lab.kernels.aev_torch.aev_torch` (float32/float64, CUDA or
    the Triton interpreter). Differentiable: first derivative by a fused Triton kernel,
    double backward supported through the torch reference.

    Args:
        block_radial: radial pairs per chunk (power of two).
        block_angular: angular partners per chunk (power of two); default from
            :func:`default_block_angular`. Larger blocks mean fewer interpreter steps.
        num_warps: warps per program (GPU).
    """
    launch = _Launch(vectors, layout, params, block_radial, block_angular, num_warps)
    return _AEVTriton.apply(vectors, launch)


__all__ = ["aev_triton", "default_block_angular", "interpreting"]
