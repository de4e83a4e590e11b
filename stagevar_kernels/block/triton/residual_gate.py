"""Triton kernel of ``residual_gate``: one elementwise pass, ``out = x + f(y, gate)``.

Grid ``(cdiv(L, BLOCK_L), cdiv(C, BLOCK_C), R)``; each program owns an ``out[r, l0:l0+BLOCK_L, c0:c0+BLOCK_C]`` tile.
The arithmetic is torch's, operation for operation (float32 products and sums, the same rounding points), so the
kernel returns the reference's bits; ``y`` broadcast over the rows is a row stride of 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...triton.common import INTERPRETING, next_pow2
from ..reference import residual_dtype
from .rounding import cast_to, round_to, upcast

MODE_PLAIN, MODE_GATE_ROUNDED, MODE_GATE = 0, 1, 2


@triton.jit
def _residual_gate_kernel(
    x_ptr,
    y_ptr,
    g_ptr,
    out_ptr,
    L,
    C,
    stride_xr,
    stride_xl,
    stride_xc,
    stride_yr,
    stride_yl,
    stride_yc,
    stride_gr,
    stride_gc,
    scale,
    MODE: tl.constexpr,
    SCALED: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """out[r, l, c] = x + y * scale | x + round_y(y * g) | x + y * g, in float32, rounded once to out's dtype."""
    pid_l = tl.program_id(0)
    pid_c = tl.program_id(1)
    r = tl.program_id(2).to(tl.int64)
    offs_l = (pid_l * BLOCK_L + tl.arange(0, BLOCK_L)).to(tl.int64)
    offs_c = (pid_c * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    mask_c = offs_c < C
    mask = (offs_l < L)[:, None] & mask_c[None, :]

    x = upcast(tl.load(x_ptr + r * stride_xr + offs_l[:, None] * stride_xl + offs_c[None, :] * stride_xc, mask=mask))
    y_raw = tl.load(y_ptr + r * stride_yr + offs_l[:, None] * stride_yl + offs_c[None, :] * stride_yc, mask=mask)
    y = upcast(y_raw)
    if MODE == 0:
        if SCALED:
            y = y * (tl.zeros([], dtype=tl.float32) + scale).to(tl.float32)  # fp64 scalars (Inductor) -> fp32
    else:
        g = tl.load(g_ptr + r * stride_gr + offs_c * stride_gc, mask=mask_c)
        y = y * g[None, :]
        if MODE == 1:
            y = round_to(y, y_raw.dtype)
    out_dtype = out_ptr.dtype.element_ty
    out = cast_to(x + y, out_dtype)
    tl.store(out_ptr + (r * L + offs_l[:, None]) * C + offs_c[None, :], out, mask=mask)


def _blocks(L: int, C: int) -> tuple[int, int, int]:
    """(BLOCK_L, BLOCK_C, num_warps)."""
    block_c = min(1024, next_pow2(C))
    if INTERPRETING:  # ~0.6 ms per program instance in the interpreter: few, large programs
        return min(64, next_pow2(L)), block_c, 4
    # GPU: 2048 elements per program at 4 warps is 16 per thread (four 16-byte fp32 vectors of x); at Infinity-2B's
    # C = 2048 one row per program, 8192 programs for R=2, L=4096 (untimed choice). ptxas -v, sm_90a: 58-72
    # registers, no spills (fp32 x, fp32/bf16 y, all three modes); 4096 elements per program needed 127.
    return max(1, 2048 // block_c), block_c, 4


def residual_gate(x, y, gate, scale: float, round_to_y: bool) -> torch.Tensor:
    """Triton implementation of ``stagevar_kernels.block.residual_gate`` (arguments already validated).

    Args:
        x: ``(R, L, C)``; y: ``(R or 1, L, C)``; gate: ``(R or 1, 1, C)`` float32 or None; any strides.
    Returns:
        ``(R, L, C)`` contiguous in the promoted dtype (see the op's docstring).
    """
    R, L, C = x.shape
    mode = MODE_PLAIN if gate is None else MODE_GATE_ROUNDED if round_to_y else MODE_GATE
    out = torch.empty((R, L, C), dtype=residual_dtype(x, y, gate, round_to_y), device=x.device)
    if out.numel() == 0:
        return out
    g = x if gate is None else gate  # an unused pointer when there is no gate
    stride_gr = 0 if gate is None or gate.shape[0] == 1 else gate.stride(0)
    stride_gc = 0 if gate is None else gate.stride(2)
    stride_yr = 0 if y.shape[0] == 1 else y.stride(0)
    block_l, block_c, num_warps = _blocks(L, C)
    grid = (triton.cdiv(L, block_l), triton.cdiv(C, block_c), R)
    _residual_gate_kernel[grid](
        x,
        y,
        g,
        out,
        L,
        C,
        x.stride(0),
        x.stride(1),
        x.stride(2),
        stride_yr,
        y.stride(1),
        y.stride(2),
        stride_gr,
        stride_gc,
        float(scale),
        MODE=mode,
        SCALED=scale != 1.0,
        BLOCK_L=block_l,
        BLOCK_C=block_c,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )
    return out
