"""Triton kernels of ``project_and_sample``: the fused Gaussian projection, row norms and Gumbel-top-k selection.

Two kernels and two device-side torch calls, no host synchronisation anywhere (CUDA-graph capturable):

1. ``_project_and_sample_kernel``, grid ``(cdiv(rank, BLOCK_R), cdiv(D, BLOCK_D), B)``. Each program owns the
   output tile ``xr[b, r0:r0+BLOCK_R, d0:d0+BLOCK_D]`` and streams ``x[b, :, d0:d0+BLOCK_D]`` in ``BLOCK_M``-row
   tiles. For every x tile it regenerates the matching ``[BLOCK_M, BLOCK_R]`` block of ``Q`` from ``tl.philox``:
   one Philox call per ``(row i, group g)`` gives the four normals of columns ``4g..4g+3`` (``philox.py``), so a
   ``[BLOCK_M, BLOCK_R // 4]`` tile of calls yields four ``[BLOCK_M, BLOCK_R // 4]`` normal tiles ``n_k`` holding
   the columns ``j = 4g + k``. Each ``n_k`` feeds its own accumulator ``acc_k += n_k^T @ x_tile`` (tensor cores,
   fp32 accumulation), so the Box-Muller outputs are never interleaved in registers and ``Q`` never touches global
   memory. ``s = float32(1/sqrt(rank))`` is applied once to the accumulators before the store in ``x.dtype``.
   The programs of the first rank tile (``pid_r == 0``) also square-and-sum the x tiles they already hold:
   one fp32 partial norm per ``(b, D-tile, row)``.
2. ``_sampling_codes_kernel``, grid ``(cdiv(M, BLOCK), B)``: sums the partial norms in a fixed order, draws the
   Gumbel noise (counter ``(i, 0, b, 1)``), forms the keys exactly as ``philox.sampling_keys`` and writes the int64
   codes of ``philox.orderable_keys`` (key descending, then index ascending).
3. ``torch.topk`` of the codes and ``torch.sort`` of the decoded indices, both on the device. An in-kernel
   ``tl.sort`` would need all M codes of a batch item in one program (M=4096: one SM sorting 32 kB of int64 while
   the rest idle); torch's radix top-k is exact on int64 codes, sync-free, and the lead's reference uses the same.

Why partial-norm buffers and not ``tl.atomic_add``: the partials cost ``B * cdiv(D, BLOCK_D) * M * 4`` bytes (205 kB
at M=1600, D=2048, BLOCK_D=64) and one tiny extra kernel, while fp32 atomics make the summation order, hence the
low bits of the norms and of the keys, depend on scheduling: ``idx`` could then change between two runs with the
same seed whenever two keys are within an ulp. The contract (same ``idx`` for the same seed) rules that out, and the
codes kernel would be needed anyway because the keys need the complete norm.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .. import philox

# Decided once, like Triton itself (the interpreter mode is fixed when ``@triton.jit`` runs at import). The
# interpreter multiplies bf16 operands of tl.dot as raw uint16 bits (silently wrong, error ~1e10), so when
# interpreting every dot operand is upcast to fp32; compiled kernels keep fp16/bf16 operands on the tensor cores.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

_MASK32 = 0xFFFFFFFF


@triton.jit
def _uniform(bits):
    """``(2 * (bits >> 9) + 1) * 2**-24`` of uint32 words: float32 in (0, 1), exact (philox.uniform_from_bits)."""
    return ((bits >> 9) * 2 + 1).to(tl.float32) * 5.9604644775390625e-08


@triton.jit
def _project_tile(
    x_base,
    col_off,
    mask_d,
    norm_part_ptr,
    seed,
    m0,
    M,
    pid_r,
    pid_d,
    pid_b,
    num_d_tiles,
    zero,
    c_group,
    c_batch,
    acc0,
    acc1,
    acc2,
    acc3,
    BLOCK_M: tl.constexpr,
    INTERPRET: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    stride_xm,
):
    """One BLOCK_M-row step: load the x tile, store its partial norms (rank tile 0), regenerate Q, accumulate."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    x_tile = tl.load(
        x_base + offs_m.to(tl.int64)[:, None] * stride_xm + col_off,
        mask=mask_m[:, None] & mask_d[None, :],
        other=0.0,
    )
    if pid_r == 0:
        xf = x_tile.to(tl.float32)
        part = tl.sum(xf * xf, axis=1)
        tl.store(norm_part_ptr + (pid_b * num_d_tiles + pid_d) * M + offs_m, part, mask=mask_m)

    # int32 counters whatever type M arrived as: tl.philox picks its 64-bit variant for 64-bit counters.
    w0, w1, w2, w3 = tl.philox(seed, zero + offs_m.to(tl.int32)[:, None], c_group, c_batch, zero)
    # sqrt_rn: tl.sqrt compiles to sqrt.approx.f32 (seen in the sm_90 PTX), torch.sqrt is IEEE. tl.log/cos/sin
    # compile to inlined libdevice code (no *.approx instructions), as accurate as the reference's.
    rad_a = tl.sqrt_rn(-2.0 * tl.log(_uniform(w0)))
    rad_b = tl.sqrt_rn(-2.0 * tl.log(_uniform(w2)))
    theta_a = 6.2831855 * _uniform(w1)
    theta_b = 6.2831855 * _uniform(w3)
    # Rows past M hold garbage normals, but their x rows were loaded as 0, so they add nothing.
    if INTERPRET:
        xa = x_tile.to(tl.float32)
        n0 = rad_a * tl.cos(theta_a)
        n1 = rad_a * tl.sin(theta_a)
        n2 = rad_b * tl.cos(theta_b)
        n3 = rad_b * tl.sin(theta_b)
    else:
        xa = x_tile
        n0 = (rad_a * tl.cos(theta_a)).to(x_tile.dtype)
        n1 = (rad_a * tl.sin(theta_a)).to(x_tile.dtype)
        n2 = (rad_b * tl.cos(theta_b)).to(x_tile.dtype)
        n3 = (rad_b * tl.sin(theta_b)).to(x_tile.dtype)
    acc0 = tl.dot(tl.trans(n0), xa, acc=acc0, input_precision=DOT_PRECISION)
    acc1 = tl.dot(tl.trans(n1), xa, acc=acc1, input_precision=DOT_PRECISION)
    acc2 = tl.dot(tl.trans(n2), xa, acc=acc2, input_precision=DOT_PRECISION)
    acc3 = tl.dot(tl.trans(n3), xa, acc=acc3, input_precision=DOT_PRECISION)
    return acc0, acc1, acc2, acc3


@triton.jit
def _project_and_sample_kernel(
    x_ptr,
    xr_ptr,
    norm_part_ptr,
    seed,
    seed_ptr,
    M,
    D,
    R,
    stride_xb,
    stride_xm,
    stride_xd,
    scale,
    BLOCK_M: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    INTERPRET: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    SEED_FROM_PTR: tl.constexpr,
):
    """xr[b] = s * n_b^T x[b] for one (D-tile, rank-tile, batch) and, on rank tile 0, per-D-tile row norms."""
    if SEED_FROM_PTR:  # a device seed (CUDA-graph replays draw new numbers)
        seed = tl.load(seed_ptr)
    # Rank tiles vary fastest in launch order, so the programs that read the same x[b, :, d-tile] run together and
    # all but the first hit L2 (x is re-read once per rank tile: 12 times at r=721).
    pid_r = tl.program_id(0)
    pid_d = tl.program_id(1).to(tl.int64)
    pid_b = tl.program_id(2).to(tl.int64)
    GROUPS: tl.constexpr = BLOCK_R // 4
    num_d_tiles = tl.num_programs(1)

    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    x_base = x_ptr + pid_b * stride_xb
    col_off = offs_d[None, :] * stride_xd  # int64: offs_d is int64

    # Philox counters (c0, c1, c2, c3) = (row i, group g, batch b, stream 0) as int32 tiles; tl.philox bitcasts
    # them to uint32 and takes the key from ``seed`` (low word, high word), exactly as philox.py documents.
    zero = tl.zeros([BLOCK_M, GROUPS], dtype=tl.int32)
    offs_g = pid_r * GROUPS + tl.arange(0, GROUPS)
    c_group = zero + offs_g[None, :]
    c_batch = zero + pid_b.to(tl.int32)

    acc0 = tl.zeros([GROUPS, BLOCK_D], dtype=tl.float32)
    acc1 = tl.zeros([GROUPS, BLOCK_D], dtype=tl.float32)
    acc2 = tl.zeros([GROUPS, BLOCK_D], dtype=tl.float32)
    acc3 = tl.zeros([GROUPS, BLOCK_D], dtype=tl.float32)

    # Runtime-bounded loops: the interpreter under numpy >= 2.4 cannot take a runtime scalar as a ``range`` bound
    # (``int()`` of a 1-element array raises), so it runs a ``while`` loop; compiled kernels keep the ``for`` loop,
    # which Triton software-pipelines (it does not pipeline ``while``).
    if INTERPRET:
        m0 = 0
        while m0 < M:
            acc0, acc1, acc2, acc3 = _project_tile(
                x_base,
                col_off,
                mask_d,
                norm_part_ptr,
                seed,
                m0,
                M,
                pid_r,
                pid_d,
                pid_b,
                num_d_tiles,
                zero,
                c_group,
                c_batch,
                acc0,
                acc1,
                acc2,
                acc3,
                BLOCK_M,
                INTERPRET,
                DOT_PRECISION,
                stride_xm,
            )
            m0 += BLOCK_M
    else:
        for m0 in range(0, M, BLOCK_M):
            acc0, acc1, acc2, acc3 = _project_tile(
                x_base,
                col_off,
                mask_d,
                norm_part_ptr,
                seed,
                m0,
                M,
                pid_r,
                pid_d,
                pid_b,
                num_d_tiles,
                zero,
                c_group,
                c_batch,
                acc0,
                acc1,
                acc2,
                acc3,
                BLOCK_M,
                INTERPRET,
                DOT_PRECISION,
                stride_xm,
            )

    s = (tl.zeros([], dtype=tl.float32) + scale).to(tl.float32)  # Inductor may hand Python floats over as fp64
    out_dtype = xr_ptr.dtype.element_ty
    # Output row j = 4 * g + k lives in acc_k[g - pid_r * GROUPS].
    rows0 = (pid_r * BLOCK_R + 4 * tl.arange(0, GROUPS)).to(tl.int64)
    out_base = xr_ptr + pid_b * R * D + offs_d[None, :]
    mask_cols = mask_d[None, :]
    tl.store(out_base + rows0[:, None] * D, (acc0 * s).to(out_dtype), mask=((rows0 < R)[:, None]) & mask_cols)
    rows1 = rows0 + 1
    tl.store(out_base + rows1[:, None] * D, (acc1 * s).to(out_dtype), mask=((rows1 < R)[:, None]) & mask_cols)
    rows2 = rows0 + 2
    tl.store(out_base + rows2[:, None] * D, (acc2 * s).to(out_dtype), mask=((rows2 < R)[:, None]) & mask_cols)
    rows3 = rows0 + 3
    tl.store(out_base + rows3[:, None] * D, (acc3 * s).to(out_dtype), mask=((rows3 < R)[:, None]) & mask_cols)


@triton.jit
def _sampling_codes_kernel(
    norm_part_ptr, codes_ptr, seed, seed_ptr, M, NUM_D_TILES, BLOCK: tl.constexpr, SEED_FROM_PTR: tl.constexpr
):
    """codes[b, i] = orderable_keys(sampling_keys(sum_t part[b, t, i], gumbel[b, i]))[i] (int64)."""
    if SEED_FROM_PTR:
        seed = tl.load(seed_ptr)
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs = pid_m * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    base = norm_part_ptr + pid_b * NUM_D_TILES * M + offs
    w = tl.zeros([BLOCK], dtype=tl.float32)
    # Fixed summation order: the keys, hence idx, are bitwise reproducible. A while loop in both modes
    # (see _project_and_sample_kernel): this loop is a few iterations of one load, nothing to pipeline.
    t = 0
    while t < NUM_D_TILES:
        w += tl.load(base + t * M, mask=mask, other=0.0)
        t += 1

    zero = tl.zeros([BLOCK], dtype=tl.int32)
    g0, _, _, _ = tl.philox(seed, offs.to(tl.int32), zero, zero + pid_b.to(tl.int32), zero + 1)
    gumbel_log = tl.log(-tl.log(_uniform(g0)))  # the Gumbel draw is -gumbel_log
    ok = (w > 0.0) & (w < float("inf"))  # also False for NaN
    safe = tl.where(ok, w, 1.0)
    key = tl.where(ok, tl.log(safe) - gumbel_log, float("-inf"))

    bits = key.to(tl.int32, bitcast=True)
    ordered = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.int64)
    code = ordered * 4294967296 + (4294967296 - 1 - offs.to(tl.int64))  # 2**32 - 1 - i, kept int64
    tl.store(codes_ptr + pid_b * M + offs, code, mask=mask)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _block_sizes(rows: int, rank: int, channels: int, fp32: bool = False) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_R, BLOCK_D, num_warps). tl.dot needs every dimension >= 16, hence BLOCK_R >= 64."""
    if _INTERPRET:
        # ~0.6 ms per program instance in the interpreter: as few, large programs as possible.
        return (
            min(64, max(16, _next_pow2(rows))),
            min(256, max(64, _next_pow2(rank))),
            min(128, max(16, _next_pow2(channels))),
            4,
        )
    block_d = min(64, max(16, _next_pow2(channels)))
    # GPU (untuned on hardware; register counts from ptxas -v for sm_90a): in bf16, BLOCK_M=64 needs 255 registers
    # and spills 212 B at 4 warps (eight live Philox states per thread); BLOCK_M=32 with BLOCK_D=64 needs 157 and no
    # spill, so three CTAs fit an SM. Infinity-2B 40x40 (M=1600, r=282, D=2048, B=1): 5 x 32 = 160 programs.
    # fp32 ("ieee" FMA dot) spills 16 B at 4 warps and needs 153 registers at BLOCK_M=16.
    if fp32:
        return 16, 64, block_d, 4
    return 32, 64, block_d, 4


def project_and_sample(x: torch.Tensor, rank: int, seed: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton implementation of ``stagevar_kernels.project_and_sample`` (arguments already validated).

    Args:
        x: ``(B, M, D)`` float32/float16/bfloat16, any strides (read in place, never copied).
        rank: ``1 <= rank <= M``.
        seed: int in ``[0, 2**63)`` or a one-element int64 tensor on ``x.device`` (loaded by the kernels).
    Returns:
        ``xr``: ``(B, rank, D)`` contiguous in ``x.dtype``; ``idx``: int64 ``(B, rank)`` sorted ascending, identical
        to the reference's.
    """
    batch, rows, channels = x.shape
    block_m, block_r, block_d, num_warps = _block_sizes(rows, rank, channels, x.dtype == torch.float32)
    num_d_tiles = triton.cdiv(channels, block_d)
    xr = torch.empty((batch, rank, channels), dtype=x.dtype, device=x.device)
    norm_part = torch.empty((batch, num_d_tiles, rows), dtype=torch.float32, device=x.device)
    codes = torch.empty((batch, rows), dtype=torch.int64, device=x.device)
    if batch == 0:
        return xr, codes[:, :rank]

    # fp32 inputs: "ieee" keeps fp32 accuracy (tf32 would miss the 1e-4 tolerance); half inputs use the tensor
    # cores in their own dtype with fp32 accumulation.
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    from_ptr = isinstance(seed, torch.Tensor)
    seed_int, seed_ptr = (0, seed) if from_ptr else (seed, codes)  # codes: a typed placeholder, never read
    grid = (triton.cdiv(rank, block_r), num_d_tiles, batch)
    _project_and_sample_kernel[grid](
        x,
        xr,
        norm_part,
        seed_int,
        seed_ptr,
        rows,
        channels,
        rank,
        x.stride(0),
        x.stride(1),
        x.stride(2),
        philox.projection_scale(rank),
        BLOCK_M=block_m,
        BLOCK_R=block_r,
        BLOCK_D=block_d,
        INTERPRET=_INTERPRET,
        DOT_PRECISION=precision,
        SEED_FROM_PTR=from_ptr,
        num_warps=num_warps,
    )
    block = min(1024, _next_pow2(rows))
    _sampling_codes_kernel[(triton.cdiv(rows, block), batch)](
        norm_part, codes, seed_int, seed_ptr, rows, num_d_tiles, BLOCK=block, SEED_FROM_PTR=from_ptr
    )

    # Top-r of the codes on the device; the low 32 bits of a code encode 2**32 - 1 - i.
    top = torch.topk(codes, rank, dim=-1, sorted=False).values
    idx = torch.sort(_MASK32 - (top & _MASK32), dim=-1).values
    return xr, idx
