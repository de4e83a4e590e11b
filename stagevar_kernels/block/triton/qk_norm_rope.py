"""Triton kernel of ``qk_norm_rope``: one read of a token's qkv row, q returned, k and v written into the cache.

Grid ``(R*L, cdiv(H, BLOCK_H))``; each program owns one token and ``BLOCK_H`` heads, as ``[BLOCK_H, BLOCK_P]`` tiles
of channel pairs: ``x0`` = channels ``2j``, ``x1`` = channels ``2j+1`` (``P = c/2`` pairs), so RoPE is elementwise
on the tiles and the squared norm of a head is ``sum(x0^2 + x1^2)``. The two half-tiles read the same cache lines,
so DRAM traffic is one pass over qkv and one over q, k, v. Arithmetic in float32 with IEEE division and square root
(``div_rn``/``sqrt_rn``), no FMA contraction (launched with ``enable_fp_fusion=False``), and roundings to the
attention dtype exactly where the reference has them (:mod:`.rounding`).

``ROUND_NORM`` (``rope_first`` only): ``F.normalize`` on a half tensor rounds the norm and the quotient to that
dtype, except under CUDA autocast, which computes ``norm`` in float32 (its fp32 op list) and leaves the quotient in
float32; the launcher follows the ambient autocast state as the inline code does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...triton.common import INTERPRETING, next_pow2
from .rounding import cast_to, round_to, upcast


@triton.jit
def _rotate(x0, x1, cos, sin):
    return x0 * cos - x1 * sin, x0 * sin + x1 * cos


@triton.jit
def _inv_norm_div(x0, x1, eps, DT: tl.constexpr, ROUND: tl.constexpr):
    """``x / max(||x||, eps)`` per head (row of the tiles); with ROUND the norm and the quotient are rounded to DT."""
    norm = tl.maximum(tl.sqrt_rn(tl.sum(x0 * x0 + x1 * x1, axis=1)), eps)
    if ROUND:
        norm = round_to(norm, DT)
        return round_to(tl.math.div_rn(x0, norm[:, None]), DT), round_to(tl.math.div_rn(x1, norm[:, None]), DT)
    return tl.math.div_rn(x0, norm[:, None]), tl.math.div_rn(x1, norm[:, None])


@triton.jit
def _qk_norm_rope_kernel(
    qkv_ptr,
    scale_ptr,
    cos_ptr,
    sin_ptr,
    q_ptr,
    k_ptr,
    v_ptr,
    L,
    H,
    P,
    eps,
    stride_xr,
    stride_xl,
    stride_xc,
    stride_s,
    stride_cr,
    stride_cl,
    stride_cp,
    stride_sr,
    stride_sl,
    stride_sp,
    stride_kr,
    stride_kh,
    stride_kl,
    stride_kc,
    stride_vr,
    stride_vh,
    stride_vl,
    stride_vc,
    ROPE: tl.constexpr,
    ROPE_FIRST: tl.constexpr,
    ROUND_NORM: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """q, k (normalised, scaled, rotated) and v of one token and BLOCK_H heads."""
    n = tl.program_id(0).to(tl.int64)
    r = n // L
    l = n % L  # noqa: E741
    offs_h = (tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)).to(tl.int64)
    offs_p = tl.arange(0, BLOCK_P).to(tl.int64)
    mask_h = offs_h < H
    mask_p = offs_p < P
    mask = mask_h[:, None] & mask_p[None, :]
    head_dim = 2 * P
    C = H * head_dim
    ch0 = offs_h[:, None] * head_dim + 2 * offs_p[None, :]  # channel 2j of each head, [BLOCK_H, BLOCK_P]

    row = qkv_ptr + r * stride_xr + l * stride_xl
    DT: tl.constexpr = qkv_ptr.dtype.element_ty
    q0 = upcast(tl.load(row + ch0 * stride_xc, mask=mask))
    q1 = upcast(tl.load(row + (ch0 + 1) * stride_xc, mask=mask))
    k0 = upcast(tl.load(row + (C + ch0) * stride_xc, mask=mask))
    k1 = upcast(tl.load(row + (C + ch0 + 1) * stride_xc, mask=mask))
    v0 = tl.load(row + (2 * C + ch0) * stride_xc, mask=mask)
    v1 = tl.load(row + (2 * C + ch0 + 1) * stride_xc, mask=mask)
    mul = tl.load(scale_ptr + offs_h * stride_s, mask=mask_h)[:, None]
    eps_f = (tl.zeros([], dtype=tl.float32) + eps).to(tl.float32)  # fp64 scalars (Inductor) -> fp32
    if ROPE:
        cos = tl.load(cos_ptr + r * stride_cr + l * stride_cl + offs_p * stride_cp, mask=mask_p)[None, :]
        sin = tl.load(sin_ptr + r * stride_sr + l * stride_sl + offs_p * stride_sp, mask=mask_p)[None, :]

    if ROPE_FIRST:  # STAR: rotate in fp32, round to DT, then normalise
        if ROPE:
            q0, q1 = _rotate(q0, q1, cos, sin)
            k0, k1 = _rotate(k0, k1, cos, sin)
            q0, q1 = round_to(q0, DT), round_to(q1, DT)
            k0, k1 = round_to(k0, DT), round_to(k1, DT)
        q0, q1 = _inv_norm_div(q0, q1, eps_f, DT, ROUND_NORM)
        k0, k1 = _inv_norm_div(k0, k1, eps_f, DT, ROUND_NORM)
        q0, q1 = q0 * mul, q1 * mul
    else:  # Infinity: normalise in fp32, scale q, rotate, one rounding
        q0, q1 = _inv_norm_div(q0, q1, eps_f, DT, False)
        k0, k1 = _inv_norm_div(k0, k1, eps_f, DT, False)
        q0, q1 = q0 * mul, q1 * mul
        if ROPE:
            q0, q1 = _rotate(q0, q1, cos, sin)
            k0, k1 = _rotate(k0, k1, cos, sin)

    q_row = q_ptr + ((r * H + offs_h[:, None]) * L + l) * head_dim + 2 * offs_p[None, :]
    tl.store(q_row, cast_to(q0, DT), mask=mask)
    tl.store(q_row + 1, cast_to(q1, DT), mask=mask)
    k_row = k_ptr + r * stride_kr + l * stride_kl + offs_h[:, None] * stride_kh + 2 * offs_p[None, :] * stride_kc
    tl.store(k_row, cast_to(k0, DT), mask=mask)
    tl.store(k_row + stride_kc, cast_to(k1, DT), mask=mask)
    v_row = v_ptr + r * stride_vr + l * stride_vl + offs_h[:, None] * stride_vh + 2 * offs_p[None, :] * stride_vc
    tl.store(v_row, v0, mask=mask)
    tl.store(v_row + stride_vc, v1, mask=mask)


def _blocks(H: int, P: int) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_P, num_warps)."""
    block_p = next_pow2(P)
    if INTERPRETING:  # one program per token: the interpreter pays per program instance
        return next_pow2(H), block_p, 4
    # GPU: up to 1024 pairs (2048 channels of q, k and v) per program; Infinity-2B's 16 heads of 64 pairs are one
    # program per token, 8 values per tile and thread at 4 warps (untimed choice; see the benchmark). ptxas -v,
    # sm_90a: 136-146 registers, no spills (fp32 and bf16, both orders).
    return max(1, min(next_pow2(H), 1024 // block_p)), block_p, 4


def _round_norm(qkv: torch.Tensor) -> bool:
    """Whether ``F.normalize`` on ``qkv``'s dtype rounds its norm (no CUDA autocast upcasting ``norm``)."""
    return not (qkv.device.type == "cuda" and torch.is_autocast_enabled("cuda"))


def qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first: bool, eps: float) -> torch.Tensor:
    """Triton implementation of ``stagevar_kernels.block.qk_norm_rope`` (arguments already validated).

    Args:
        qkv: ``(R, L, 3C)``; scale_mul: ``(H,)`` or ``(1, H, 1, 1)`` float32; cos, sin: ``(L, c/2)`` or
        ``(R, L, c/2)`` float32 or None; k_out, v_out: ``(R, H, L, c)`` written in place; all any strides.
    Returns:
        q ``(R, H, L, c)`` contiguous in ``qkv.dtype``.
    """
    R, H, L, c = k_out.shape
    q = torch.empty((R, H, L, c), dtype=qkv.dtype, device=qkv.device)
    if q.numel() == 0:
        return q
    scale = scale_mul.reshape(H)
    rope = cos is not None

    def table_strides(t):
        if not rope:
            return 0, 0, 0
        if t.dim() == 2:
            return 0, t.stride(0), t.stride(1)
        return t.stride(0), t.stride(1), t.stride(2)

    block_h, block_p, num_warps = _blocks(H, c // 2)
    _qk_norm_rope_kernel[(R * L, triton.cdiv(H, block_h))](
        qkv,
        scale,
        cos if rope else scale,
        sin if rope else scale,
        q,
        k_out,
        v_out,
        L,
        H,
        c // 2,
        float(eps),
        *qkv.stride(),
        scale.stride(0),
        *table_strides(cos),
        *table_strides(sin),
        *k_out.stride(),
        *v_out.stride(),
        ROPE=rope,
        ROPE_FIRST=rope_first,
        ROUND_NORM=rope_first and _round_norm(qkv),
        BLOCK_H=block_h,
        BLOCK_P=block_p,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )
    return q
