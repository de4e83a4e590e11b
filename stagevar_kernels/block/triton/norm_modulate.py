"""Triton kernel of ``norm_modulate``: LayerNorm statistics, affine and AdaLN modulation, cast, in one pass.

Grid ``(cdiv(R*L, BLOCK_N),)``; each program owns ``BLOCK_N`` whole rows of ``C`` channels (``BLOCK_C`` the next
power of two, so a row lives in registers: 2048 channels are 16 float32 values per thread at 4 warps). Statistics as
torch's ``layer_norm`` defines them, in float32: ``mean = sum(x) / C``, then the biased variance of ``x - mean``,
``rstd = 1 / sqrt(var + eps)``, with IEEE division and square root (``div_rn``/``sqrt_rn``: Triton's ``/`` and
``sqrt`` compile to approximate instructions on NVIDIA GPUs, the interpreter's are exact). Then
``y = (x - mean) * rstd``, ``y = y * weight + bias``, ``y = y * (1 + scale) + shift``, each product and sum rounded
(no FMA), and one cast to the output dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...triton.common import INTERPRETING, next_pow2
from .rounding import cast_to, upcast


@triton.jit
def _norm_modulate_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    scale_ptr,
    shift_ptr,
    out_ptr,
    N,
    L,
    C,
    eps,
    stride_xr,
    stride_xl,
    stride_xc,
    stride_sr,
    stride_sc,
    stride_hr,
    stride_hc,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    MODULATE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """out[n] = modulate(affine(layer_norm(x[n]))) for the rows n = r * L + l of one block."""
    offs_n = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C).to(tl.int64)
    mask_n = offs_n < N
    mask_c = offs_c < C
    mask = mask_n[:, None] & mask_c[None, :]
    r = offs_n // L
    l = offs_n % L  # noqa: E741

    x = upcast(tl.load(x_ptr + (r * stride_xr + l * stride_xl)[:, None] + offs_c[None, :] * stride_xc, mask=mask))
    x = tl.where(mask, x, 0.0)
    c_f = tl.zeros([], dtype=tl.float32) + C  # C may be specialised to the constant 1
    mean = tl.math.div_rn(tl.sum(x, axis=1), c_f)
    d = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.math.div_rn(tl.sum(d * d, axis=1), c_f)
    eps_f = (tl.zeros([], dtype=tl.float32) + eps).to(tl.float32)  # fp64 scalars (Inductor) -> fp32
    rstd = tl.math.div_rn(1.0, tl.sqrt_rn(var + eps_f))
    y = d * rstd[:, None]
    if HAS_W:
        y = y * tl.load(w_ptr + offs_c, mask=mask_c)[None, :]
    if HAS_B:
        y = y + tl.load(b_ptr + offs_c, mask=mask_c)[None, :]
    if MODULATE:
        s = tl.load(scale_ptr + (r * stride_sr)[:, None] + offs_c[None, :] * stride_sc, mask=mask)
        h = tl.load(shift_ptr + (r * stride_hr)[:, None] + offs_c[None, :] * stride_hc, mask=mask)
        y = y * (s + 1.0)
        y = y + h
    out_dtype = out_ptr.dtype.element_ty
    tl.store(out_ptr + offs_n[:, None] * C + offs_c[None, :], cast_to(y, out_dtype), mask=mask)


def _blocks(N: int, C: int) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_C, num_warps)."""
    block_c = next_pow2(C)
    if INTERPRETING:  # ~0.6 ms per program instance in the interpreter: few, large programs
        return max(1, min(next_pow2(N), 8192 // block_c)), block_c, 4
    # GPU: at least 2048 elements per program, whole rows; one row of C = 2048 (Infinity-2B) at 4 warps is 16 fp32
    # values per thread, so x, d and y stay in registers (untimed choice; see the benchmark). ptxas -v, sm_90a,
    # affine + modulation: 107-108 registers, no spills (fp32 and bf16 x, bf16 out).
    block_n = max(1, 2048 // block_c)
    num_warps = 4 if block_c <= 4096 else 8
    return block_n, block_c, num_warps


def norm_modulate(x, weight, bias, scale, shift, eps: float, out_dtype) -> torch.Tensor:
    """Triton implementation of ``stagevar_kernels.block.norm_modulate`` (arguments already validated).

    Args:
        x: ``(R, L, C)`` any strides; weight, bias: ``(C,)`` float32 or None; scale, shift: ``(R or 1, 1, C)``
        float32 or None.
    Returns:
        ``(R, L, C)`` contiguous in ``out_dtype`` (None: float32).
    """
    R, L, C = x.shape
    out = torch.empty((R, L, C), dtype=out_dtype or torch.float32, device=x.device)
    N = R * L
    if N == 0:
        return out
    weight = weight.contiguous() if weight is not None else None
    bias = bias.contiguous() if bias is not None else None
    modulate = scale is not None

    def row_strides(t):
        return (0 if t.shape[0] == 1 else t.stride(0), t.stride(2)) if t is not None else (0, 0)

    block_n, block_c, num_warps = _blocks(N, C)
    _norm_modulate_kernel[(triton.cdiv(N, block_n),)](
        x,
        weight if weight is not None else x,
        bias if bias is not None else x,
        scale if modulate else x,
        shift if modulate else x,
        out,
        N,
        L,
        C,
        float(eps),
        x.stride(0),
        x.stride(1),
        x.stride(2),
        *row_strides(scale),
        *row_strides(shift),
        HAS_W=weight is not None,
        HAS_B=bias is not None,
        MODULATE=modulate,
        BLOCK_N=block_n,
        BLOCK_C=block_c,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )
    return out
