"""Rounding helpers shared by the block kernels: the same bits on the Triton interpreter and on a GPU.

The interpreter casts float32 to bfloat16 by truncation (``numpy`` has no bfloat16; measured with triton 3.6: about
half of random values came out one ulp towards zero, subnormals were flushed, and ``fp_downcast_rounding="rtne"``
saturated overflow), while GPUs and torch round to nearest, ties to even. Here the rounding is integer arithmetic
and the bfloat16 value is made by a bitcast, which both execute exactly. float16 casts are round-to-nearest-even on
both already.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _bf16_bits(x):
    """uint32 bits of float32 ``x`` rounded to bfloat16 (nearest, ties to even), in the upper half; NaN stays NaN."""
    bits = x.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return tl.where(x != x, bits | 0x00400000, rounded)  # a NaN could round into an infinity: keep it a quiet NaN


@triton.jit
def round_to(x, dtype: tl.constexpr):
    """float32 ``x`` rounded to ``dtype`` (nearest, ties to even), returned as float32."""
    if dtype == tl.bfloat16:
        return _bf16_bits(x).to(tl.float32, bitcast=True)
    elif dtype == tl.float16:
        return x.to(tl.float16).to(tl.float32)
    else:
        return x


@triton.jit
def cast_to(x, dtype: tl.constexpr):
    """float32 ``x`` cast to ``dtype`` (nearest, ties to even), for a store."""
    if dtype == tl.bfloat16:
        return (_bf16_bits(x) >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(dtype)


@triton.jit
def upcast(x):
    """``x`` (float32/float16/bfloat16) as float32, exactly (bfloat16 through its bits: the interpreter flushes
    bfloat16 subnormals in a plain cast)."""
    if x.dtype == tl.bfloat16:
        return (x.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    else:
        return x.to(tl.float32)
