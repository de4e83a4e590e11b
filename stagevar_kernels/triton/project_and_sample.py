"""Triton kernels of ``project_and_sample``: Q drawn once, one GEMM, one radix selection. Three launches.

1. ``_prepare_kernel``, grid ``(cdiv(M, BLOCK_M), B)``. Each program owns ``BLOCK_M`` rows of one batch item:
   - it draws their rows of ``Q`` once (``tl.philox`` at counter ``(i, g, b, 0)``, Box-Muller, ``* s``; the stream
     of ``stagevar_kernels.philox``) and stores them in a workspace ``q`` of shape ``(B, M, r)``: ``x.dtype`` for
     half inputs, float32 for float32 inputs (0.9 MB at 40x40 and 5.9 MB at 64x64 in bf16: it stays in L2 for
     the GEMM);
   - it streams the same rows of ``x`` once over all of D for the squared norms (fp32, a fixed order), draws the
     Gumbel noise (counter ``(i, 0, b, 1)``) and writes the sampling key as a uint32 whose integer order is the
     float order (``_orderable``).
   Generating ``Q`` once per call, not once per output tile, is the point: the fused predecessor regenerated every
   normal for each of the 32 D tiles and was bound by Philox/Box-Muller issue, not by memory or tensor cores.
2. ``_project_kernel``, grid ``(cdiv(r, BLOCK_R), cdiv(D, BLOCK_D), B)``: ``xr[b] = q[b]^T x[b]``, a tensor-core GEMM
   accumulated in fp32 over M in a fixed order (deterministic), rounded once to ``x.dtype``. 160 programs at the
   Infinity-2B 40x40 step with B=1 (r=282, D=2048), so all 132 SMs of an H100/H200 have work. Half inputs: one
   ``tl.dot`` on ``x.dtype`` operands. float32 inputs: 3xTF32 spelt out in the kernel (``_split_tf32``): both
   operands are split into a TF32 "hi" part and a TF32 "lo" remainder, rounded explicitly (round-to-nearest, ties
   away, as ``cvt.rna.tf32.f32``), and ``hi*hi + hi*lo + lo*hi`` runs on the TF32 tensor cores. Because every dot
   operand is already TF32-exact, the interpreter (which multiplies in fp32) computes the same products as the GPU;
   the relative error is about 2**-21 per product, i.e. float32-level, at a third of the TF32 rate instead of the
   SIMT fp32 rate. A non-finite ``x`` element keeps the reference's result: its "lo" part is 0 and the ``lo*hi``
   product uses 0 in its place, so ``inf`` never meets a ``0`` or an opposite-sign ``lo`` (no spurious NaN).
3. ``_select_kernel``, grid ``(B,)``: radix select on the uint32 keys, 8-bit digits from the top: four passes of a
   256-bin ``tl.histogram`` over the candidates that still match the prefix find the r-th largest key ``T`` and how
   many of its ties to take; a final pass in index order writes every row with a key above ``T`` and the first
   ``need`` rows with key ``T`` at positions given by a running prefix sum. The output is therefore sorted
   ascending with no sort, and ties go to the lowest index, exactly the total order of ``philox.orderable_keys``.
   No ``torch.topk``/``torch.sort``: one program per batch item reading ``M * 4`` bytes five times (L2-resident).

No launch reads anything on the host: the seed is either a kernel argument or (``SEED_FROM_PTR``) loaded from a
one-element device tensor, so a captured CUDA graph draws new numbers when that tensor is rewritten.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import philox
from .common import INTERPRETING, next_pow2
from .rounding import round_to


@triton.jit
def _uniform(bits):
    """``(2 * (bits >> 9) + 1) * 2**-24`` of uint32 words: float32 in (0, 1), exact (philox.uniform_from_bits)."""
    return ((bits >> 9) * 2 + 1).to(tl.float32) * 5.9604644775390625e-08


@triton.jit
def _orderable(key):
    """float32 -> int32 bits of a uint32 whose unsigned order is the float order (no NaN among the keys)."""
    bits = key.to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) | -2147483648)  # negative: flip all bits; positive: flip the sign bit


@triton.jit
def _prepare_kernel(
    x_ptr,
    q_ptr,
    keys_ptr,
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
    BLOCK_G: tl.constexpr,
    BLOCK_D: tl.constexpr,
    INTERPRET: tl.constexpr,
    SEED_FROM_PTR: tl.constexpr,
):
    """q[b, i, :] = s * n[b, i, :] in q's dtype and keys[b, i] = orderable(log ||x[b, i]||^2 + gumbel[b, i])."""
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    if SEED_FROM_PTR:  # a device seed: CUDA-graph replays draw new numbers
        seed = tl.load(seed_ptr)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    s = (tl.zeros([], dtype=tl.float32) + scale).to(tl.float32)  # Inductor may hand Python floats over as fp64
    q_dtype = q_ptr.dtype.element_ty

    # Q rows: one Philox call per (row i, group g) gives the normals of columns 4g..4g+3 (philox.py). int32
    # counters whatever type M arrived as: tl.philox picks its 64-bit variant for 64-bit counters.
    zero = tl.zeros([BLOCK_M, BLOCK_G], dtype=tl.int32)
    c_row = zero + offs_m.to(tl.int32)[:, None]
    c_batch = zero + pid_b.to(tl.int32)
    q_rows = q_ptr + (pid_b * M + offs_m.to(tl.int64))[:, None] * R
    row_ok = mask_m[:, None]
    groups = (R + 3) // 4
    # while-loops under the interpreter (numpy >= 2.4 rejects runtime range bounds there); compiled: for-loops.
    g0 = 0
    while g0 < groups:
        offs_g = g0 + tl.arange(0, BLOCK_G)
        w0, w1, w2, w3 = tl.philox(seed, c_row, zero + offs_g[None, :], c_batch, zero)
        # sqrt_rn: tl.sqrt compiles to sqrt.approx.f32, torch.sqrt is IEEE. tl.log/cos/sin compile to inlined
        # libdevice code, within an ulp or two of torch's.
        rad_a = tl.sqrt_rn(-2.0 * tl.log(_uniform(w0)))
        rad_b = tl.sqrt_rn(-2.0 * tl.log(_uniform(w2)))
        theta_a = 6.2831855 * _uniform(w1)
        theta_b = 6.2831855 * _uniform(w3)
        col = 4 * offs_g[None, :]
        # (rad * trig) * s: the reference's order (philox.projection_matrix), then one rounding (RNE) to q's dtype.
        q0 = round_to(rad_a * tl.cos(theta_a) * s, q_dtype, INTERPRET)
        q1 = round_to(rad_a * tl.sin(theta_a) * s, q_dtype, INTERPRET)
        q2 = round_to(rad_b * tl.cos(theta_b) * s, q_dtype, INTERPRET)
        q3 = round_to(rad_b * tl.sin(theta_b) * s, q_dtype, INTERPRET)
        tl.store(q_rows + col, q0, mask=row_ok & (col < R))
        tl.store(q_rows + col + 1, q1, mask=row_ok & (col + 1 < R))
        tl.store(q_rows + col + 2, q2, mask=row_ok & (col + 2 < R))
        tl.store(q_rows + col + 3, q3, mask=row_ok & (col + 3 < R))
        g0 += BLOCK_G

    # Squared norms over all of D, fp32, a fixed order: the keys (hence idx) are bitwise reproducible run to run.
    x_rows = x_ptr + pid_b * stride_xb + offs_m.to(tl.int64)[:, None] * stride_xm
    w = tl.zeros([BLOCK_M], dtype=tl.float32)
    if INTERPRET:
        d0 = 0
        while d0 < D:
            w = _add_squares(x_rows, d0, mask_m, D, stride_xd, w, BLOCK_D)
            d0 += BLOCK_D
    else:
        for d0 in range(0, D, BLOCK_D):
            w = _add_squares(x_rows, d0, mask_m, D, stride_xd, w, BLOCK_D)

    one = tl.zeros([BLOCK_M], dtype=tl.int32)
    gw0, _, _, _ = tl.philox(seed, offs_m.to(tl.int32), one, one + pid_b.to(tl.int32), one + 1)
    gumbel_log = tl.log(-tl.log(_uniform(gw0)))  # the Gumbel draw is -gumbel_log
    ok = (w > 0.0) & (w < float("inf"))  # also False for NaN
    key = tl.where(ok, tl.log(tl.where(ok, w, 1.0)) - gumbel_log, float("-inf"))
    tl.store(keys_ptr + pid_b * M + offs_m, _orderable(key), mask=mask_m)


@triton.jit
def _add_squares(x_rows, d0, mask_m, D, stride_xd, w, BLOCK_D: tl.constexpr):
    """w += sum over the channel chunk d0:d0+BLOCK_D of float32(x)**2, per row."""
    offs_d = d0 + tl.arange(0, BLOCK_D)
    mask = mask_m[:, None] & (offs_d < D)[None, :]
    xf = tl.load(x_rows + offs_d[None, :].to(tl.int64) * stride_xd, mask=mask, other=0.0).to(tl.float32)
    return w + tl.sum(xf * xf, axis=1)


@triton.jit
def _round_tf32(v):
    """Round float32 to TF32 (10 mantissa bits), to nearest with ties away from zero: ``cvt.rna.tf32.f32``."""
    bits = v.to(tl.int32, bitcast=True)
    rounded = ((bits + 4096) & -8192).to(tl.float32, bitcast=True)  # 4096 = half an ulp of TF32, -8192 = ~0x1FFF
    return tl.where(v == v, rounded, v)  # NaN stays NaN (a payload carry could otherwise make it inf)


@triton.jit
def _split_tf32(v):
    """``(hi, lo, hi_finite)``: TF32-exact parts with ``hi + lo ~= v`` (error ~2**-22 |v|). For non-finite ``v``:
    ``lo = 0`` and ``hi_finite = 0``, so only ``hi * hi`` carries the inf/NaN, as in the fp32 reference."""
    hi = _round_tf32(v)
    finite = tl.abs(hi) < float("inf")
    lo = tl.where(finite, _round_tf32(v - hi), 0.0)
    return hi, lo, tl.where(finite, hi, 0.0)


@triton.jit
def _project_step(q_tile, x_tile, acc, SPLIT_TF32: tl.constexpr, INTERPRET: tl.constexpr):
    """acc += q_tile @ x_tile with the arithmetic documented in the module docstring."""
    if SPLIT_TF32:
        q_hi, q_lo, _ = _split_tf32(q_tile)
        x_hi, x_lo, x_hi_finite = _split_tf32(x_tile)
        # Small terms first, the large one last (3xTF32's usual order).
        acc = tl.dot(q_lo, x_hi_finite, acc=acc, input_precision="tf32")
        acc = tl.dot(q_hi, x_lo, acc=acc, input_precision="tf32")
        acc = tl.dot(q_hi, x_hi, acc=acc, input_precision="tf32")
    elif INTERPRET:
        # The interpreter multiplies bf16 dot operands as raw uint16 bits (silently wrong), so upcast: products of
        # two half values are exact in fp32, which is what the tensor cores compute before their fp32 accumulation.
        acc = tl.dot(q_tile.to(tl.float32), x_tile.to(tl.float32), acc=acc, input_precision="ieee")
    else:
        acc = tl.dot(q_tile, x_tile, acc=acc)
    return acc


@triton.jit
def _accumulate_rows(
    q_base,
    x_base,
    m0,
    M,
    R,
    stride_xm,
    mask_r,
    mask_d,
    acc,
    BLOCK_M: tl.constexpr,
    SPLIT_TF32: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """acc += q[m0:m0+BLOCK_M, r-tile]^T @ x[m0:m0+BLOCK_M, d-tile] (rows past M read as 0)."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    q_t = tl.load(q_base + offs_m.to(tl.int64)[None, :] * R, mask=mask_r[:, None] & mask_m[None, :], other=0.0)
    x_t = tl.load(x_base + offs_m.to(tl.int64)[:, None] * stride_xm, mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    return _project_step(q_t, x_t, acc, SPLIT_TF32, INTERPRET)


@triton.jit
def _project_kernel(
    q_ptr,
    x_ptr,
    xr_ptr,
    M,
    D,
    R,
    stride_xb,
    stride_xm,
    stride_xd,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    SPLIT_TF32: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """xr[b, r-tile, d-tile] = sum over M of q[b, m, r-tile]^T x[b, m, d-tile], fp32 accumulation, one rounding."""
    # Rank tiles vary fastest in launch order, so the programs reading the same x[b, :, d-tile] run together and
    # all but the first hit L2.
    pid_r = tl.program_id(0)
    pid_d = tl.program_id(1).to(tl.int64)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_r = offs_r < R
    mask_d = offs_d < D
    q_base = q_ptr + pid_b * M * R + offs_r[:, None]
    x_base = x_ptr + pid_b * stride_xb + offs_d[None, :] * stride_xd
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
    if INTERPRET:
        m0 = 0
        while m0 < M:
            acc = _accumulate_rows(
                q_base, x_base, m0, M, R, stride_xm, mask_r, mask_d, acc, BLOCK_M, SPLIT_TF32, INTERPRET
            )
            m0 += BLOCK_M
    else:
        for m0 in range(0, M, BLOCK_M):
            acc = _accumulate_rows(
                q_base, x_base, m0, M, R, stride_xm, mask_r, mask_d, acc, BLOCK_M, SPLIT_TF32, INTERPRET
            )
    out = xr_ptr + (pid_b * R + offs_r.to(tl.int64))[:, None] * D + offs_d[None, :]
    tl.store(out, round_to(acc, xr_ptr.dtype.element_ty, INTERPRET), mask=mask_r[:, None] & mask_d[None, :])


@triton.jit
def _select_kernel(keys_ptr, idx_ptr, M, R, BLOCK: tl.constexpr):
    """idx[b] = the R rows with the largest keys (ties: lowest index), ascending. One program per batch item."""
    pid_b = tl.program_id(0).to(tl.int64)
    base = keys_ptr + pid_b * M
    bins = tl.arange(0, 256)
    prefix = tl.zeros([], dtype=tl.uint32)  # the digits of T found so far
    known = tl.zeros([], dtype=tl.uint32)  # their bit mask
    need = tl.zeros([], dtype=tl.int32) + R  # how many rows to take among those matching the prefix
    for p in tl.static_range(4):
        shift = 24 - 8 * p  # a compile-time int: p comes from static_range
        hist = tl.zeros([256], dtype=tl.int32)
        c0 = 0
        while c0 < M:  # a while in both modes: few iterations, nothing to pipeline
            offs = c0 + tl.arange(0, BLOCK)
            valid = offs < M
            u = tl.load(base + offs, mask=valid, other=0).to(tl.uint32, bitcast=True)
            match = valid & ((u & known) == prefix)
            hist += tl.histogram(((u >> shift) & 255).to(tl.int32), 256, mask=match)
            c0 += BLOCK
        # at_least[d] = candidates whose digit is >= d (non-increasing in d); the digit of T is the largest d with
        # at_least[d] >= need.
        at_least = tl.sum(hist) - tl.cumsum(hist, axis=0) + hist
        digit = tl.sum((at_least >= need).to(tl.int32)) - 1
        above = tl.sum(tl.where(bins == digit, at_least - hist, 0))  # candidates with a larger digit: all taken
        need -= above
        prefix = prefix | (digit.to(tl.uint32) << shift)
        known = known | (tl.full([], 255, tl.uint32) << shift)
    # prefix is now T, need (>= 1) how many rows with key T to take, lowest index first. Compaction in index order.
    taken = tl.zeros([], dtype=tl.int32)
    ties = tl.zeros([], dtype=tl.int32)
    c0 = 0
    while c0 < M:
        offs = c0 + tl.arange(0, BLOCK)
        valid = offs < M
        u = tl.load(base + offs, mask=valid, other=0).to(tl.uint32, bitcast=True)
        eq = (valid & (u == prefix)).to(tl.int32)
        tie_rank = ties + tl.cumsum(eq, axis=0) - eq
        take = (valid & (u > prefix)) | ((eq != 0) & (tie_rank < need))
        take_i = take.to(tl.int32)
        pos = taken + tl.cumsum(take_i, axis=0) - take_i
        tl.store(idx_ptr + pid_b * R + pos, offs.to(tl.int64), mask=take)
        taken += tl.sum(take_i)
        ties += tl.sum(eq)
        c0 += BLOCK


def _prepare_blocks(rows: int, rank: int, channels: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_G, BLOCK_D, num_warps) of ``_prepare_kernel``."""
    groups = (rank + 3) // 4
    if INTERPRETING:  # ~0.6 ms per program instance in the interpreter: few, large programs
        return min(64, next_pow2(rows)), min(64, next_pow2(groups)), min(256, next_pow2(channels)), 4
    # The norm pass is bound by bytes in flight: a program has one x tile outstanding at a time (loads that feed no
    # tl.dot are not software-pipelined), so the tile is wide and the programs many. 4 rows x 1024 channels (8 kB of
    # bf16, 32 elements per thread) and 400 programs at 40x40 (M=1600), 1024 at 64x64: ~3 MB in flight at B=1,
    # against ~4 MB for 4.8 TB/s at ~0.8 us latency. (16 x 128 tiles gave 100 programs with 4 kB each: ~0.4 MB.)
    # ptxas -v, sm_90a: see bench/RESULTS.md "Kernel design".
    return 4, min(16, next_pow2(groups)), min(1024, next_pow2(channels)), 4


def _project_blocks(rank: int, channels: int, split_tf32: bool) -> tuple[int, int, int, int, int]:
    """(BLOCK_R, BLOCK_D, BLOCK_M, num_warps, num_stages) of ``_project_kernel``; tl.dot needs every dim >= 16."""
    if INTERPRETING:
        return min(256, max(16, next_pow2(rank))), min(128, max(16, next_pow2(channels))), 64, 4, 1
    # 64 x 64 output tiles: 5 x 32 = 160 programs at the 40x40 step with B=1 (132 SMs), 12 x 32 at 64x64.
    # ptxas -v, sm_90a: bf16 compiles to wgmma m64n64k16 (168 registers, no spill); the fp32 3xTF32 variant to
    # wgmma m64n64k8 .tf32 (200 registers, no spill).
    if split_tf32:  # three dots and the hi/lo split of both operands per step: a shorter K step
        return 64, 64, 32, 4, 3
    return 64, 64, 64, 4, 3


def project_and_sample(x: torch.Tensor, rank: int, seed: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton implementation of ``stagevar_kernels.project_and_sample`` (arguments already validated).

    Args:
        x: ``(B, M, D)`` float32/float16/bfloat16, any strides (read in place, never copied).
        rank: ``1 <= rank <= M``.
        seed: int in ``[0, 2**63)`` or a one-element int64 tensor on ``x.device`` (loaded by the kernels).
    Returns:
        ``xr``: ``(B, rank, D)`` contiguous in ``x.dtype``; ``idx``: int64 ``(B, rank)`` sorted ascending, the
        reference's.
    """
    batch, rows, channels = x.shape
    xr = torch.empty((batch, rank, channels), dtype=x.dtype, device=x.device)
    idx = torch.empty((batch, rank), dtype=torch.int64, device=x.device)
    if batch == 0:
        return xr, idx
    # Q's workspace: x.dtype for half inputs (the GEMM's operand dtype), float32 for float32 (split in the GEMM).
    q = torch.empty((batch, rows, rank), dtype=x.dtype, device=x.device)
    keys = torch.empty((batch, rows), dtype=torch.int32, device=x.device)
    from_ptr = isinstance(seed, torch.Tensor)
    seed_int, seed_ptr = (0, seed) if from_ptr else (seed, idx)  # idx: a typed placeholder, never read

    block_m, block_g, block_d, warps = _prepare_blocks(rows, rank, channels)
    _prepare_kernel[(triton.cdiv(rows, block_m), batch)](
        x,
        q,
        keys,
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
        BLOCK_G=block_g,
        BLOCK_D=block_d,
        INTERPRET=INTERPRETING,
        SEED_FROM_PTR=from_ptr,
        num_warps=warps,
    )

    split = x.dtype == torch.float32
    block_r, block_dd, block_k, warps, stages = _project_blocks(rank, channels, split)
    _project_kernel[(triton.cdiv(rank, block_r), triton.cdiv(channels, block_dd), batch)](
        q,
        x,
        xr,
        rows,
        channels,
        rank,
        x.stride(0),
        x.stride(1),
        x.stride(2),
        BLOCK_R=block_r,
        BLOCK_D=block_dd,
        BLOCK_M=block_k,
        SPLIT_TF32=split,
        INTERPRET=INTERPRETING,
        num_warps=warps,
        num_stages=stages,
    )

    _select(keys, idx)
    return xr, idx


def _select(keys: torch.Tensor, idx: torch.Tensor, block: int | None = None) -> None:
    """``idx[b]`` = the ``idx.shape[1]`` rows of largest ``keys[b]`` (int32 holding orderable uint32), ascending."""
    batch, rows = keys.shape
    block = block or min(4096, max(256, next_pow2(rows)))  # M <= 4096 (every Infinity/STAR step): one chunk
    _select_kernel[(batch,)](keys, idx, rows, idx.shape[1], BLOCK=block, num_warps=8 if block >= 2048 else 4)


def select_rows(keys: torch.Tensor, rank: int, block: int | None = None) -> torch.Tensor:
    """The selection step alone, for tests: float32 keys ``(B, M)`` (no NaN) -> int64 ``(B, rank)``, the result of
    ``philox.select_rows``. ``block`` overrides the chunk size (to exercise several chunks on small M)."""
    bits = keys.contiguous().view(torch.int32)
    ordered = bits ^ ((bits >> 31) | torch.iinfo(torch.int32).min)  # as _orderable
    idx = torch.empty((keys.shape[0], rank), dtype=torch.int64, device=keys.device)
    _select(ordered.contiguous(), idx, block)
    return idx
