"""Triton kernel of ``bit_pair_probs``: the top-k/top-p filter and softmax of every logit pair in one pass.

Grid ``(cdiv(N, BLOCK),)`` over the ``N = B*L*d`` pairs. For two entries the sampler's rules reduce to:

- top-k (``TOP_K1``, i.e. ``top_k == 1``; other values keep both): an entry below the pair's max is removed, so
  a tie keeps both.
- top-p (``TOP_P``, ``top_p > 0``): ``sort`` ascending puts the smaller logit ``lo`` first (on a tie the entry of
  index 0: torch's sort keeps ties in index order); ``lo`` is removed when its softmax probability
  ``e / (1 + e)``, ``e = exp(lo - hi)``, is ``<= threshold = float32(1 - top_p)``; ``hi`` is always kept.
- removed entries become ``-inf``; then the softmax ``exp(x - max) / sum``.

Division is IEEE (``div_rn``) and no FMA is contracted; ``exp`` is the device's (an ulp or two from ATen's), so a
pair whose smaller probability lies within float32 rounding of the threshold may be decided differently.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from ...triton.common import INTERPRETING, next_pow2


@triton.jit
def _bit_pair_probs_kernel(
    logits_ptr,
    out_ptr,
    N,
    L,
    D,
    threshold,
    stride_b,
    stride_l,
    stride_v,
    TOP_K1: tl.constexpr,
    TOP_P: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """out[n] = softmax(filter(logits pair n)) for the pairs n = (b * L + l) * D + j of one block."""
    offs = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = offs < N
    j = offs % D
    bl = offs // D
    ptr = logits_ptr + (bl // L) * stride_b + (bl % L) * stride_l + 2 * j * stride_v
    l0 = tl.load(ptr, mask=mask, other=0.0)
    l1 = tl.load(ptr + stride_v, mask=mask, other=0.0)
    if TOP_K1:
        m = tl.maximum(l0, l1)
        l0 = tl.where(l0 < m, -float("inf"), l0)
        l1 = tl.where(l1 < m, -float("inf"), l1)
    if TOP_P:
        hi_is_0 = l0 > l1
        lo = tl.where(hi_is_0, l1, l0)
        hi = tl.where(hi_is_0, l0, l1)
        e = tl.exp(lo - hi)
        p_lo = tl.math.div_rn(e, e + 1.0)
        thr = (tl.zeros([], dtype=tl.float32) + threshold).to(tl.float32)
        drop = p_lo <= thr
        l0 = tl.where(drop & ~hi_is_0, -float("inf"), l0)
        l1 = tl.where(drop & hi_is_0, -float("inf"), l1)
    m = tl.maximum(l0, l1)
    e0 = tl.exp(l0 - m)
    e1 = tl.exp(l1 - m)
    s = e0 + e1
    tl.store(out_ptr + 2 * offs, tl.math.div_rn(e0, s), mask=mask)
    tl.store(out_ptr + 2 * offs + 1, tl.math.div_rn(e1, s), mask=mask)


def _block(N: int) -> tuple[int, int]:
    """(BLOCK, num_warps)."""
    if INTERPRETING:  # ~0.6 ms per program instance in the interpreter: few, large programs
        return min(4096, next_pow2(N)), 4
    # GPU: 1024 pairs per program at 4 warps is 8 pairs per thread (Infinity-2B's last step: 2 x 4096 x 32 pairs
    # = 256 programs; untimed choice). ptxas -v, sm_90a: 90 registers with 64-bit strides, no spills.
    return 1024, 4


def bit_pair_probs(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Triton implementation of ``stagevar_kernels.block.bit_pair_probs`` (arguments already validated).

    Args:
        logits: ``(B, L, 2d)`` float32, any strides.
    Returns:
        ``(B*L*d, 2)`` float32 contiguous.
    """
    B, L, V2 = logits.shape
    D = V2 // 2
    N = B * L * D
    out = torch.empty((N, 2), dtype=torch.float32, device=logits.device)
    if N == 0:
        return out
    block, num_warps = _block(N)
    _bit_pair_probs_kernel[(triton.cdiv(N, block),)](
        logits,
        out,
        N,
        L,
        D,
        float(np.float32(1 - top_p)),  # torch compares the float32 cumsum with the Python float rounded to float32
        *logits.stride(),
        TOP_K1=top_k == 1,
        TOP_P=top_p > 0,
        BLOCK=block,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )
    return out
