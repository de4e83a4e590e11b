"""Triton kernels of ``restore_merge``: representative rows merged with the on-the-fly upsampled cache.

One launch, no host synchronisation, no workspace:

``_restore_merge_kernel``, grid ``(cdiv(h*w, BLOCK_P), d_split, B)``. Each program owns ``BLOCK_P`` output rows and a
span of ``D_SPAN`` channels (looped in ``BLOCK_D`` chunks). It first finds, for each of its rows ``p``, the largest
``j`` with ``idx[b, j] == p`` by scanning ``idx[b]`` (``_source_rows``: ``r`` int64 loads, all independent, from
L2). Selected rows then load ``y[b, j]``; the others gather the taps of ``F.interpolate(mode,
align_corners=False)`` from ``cache`` (masked loads: a selected row reads no cache bytes, an interpolated one no
``y`` bytes), weight them in fp32, and every output byte is written exactly once, in ``y.dtype``.

Why a scan and not a binary search of the sorted ``idx`` or an inverse map: a scan needs no order (any ``idx`` gives
the reference's output, so an unsorted ``idx`` can never give a silently wrong result), resolves duplicates to the
largest ``j`` like ``reference.source_rows`` and the CUDA backend's atomicMax, and has no chain of dependent loads
(a binary search over r=721 entries is ten dependent L2 round trips). Its cost, ``BLOCK_P * r`` compares per
program, is paid once per ``D_SPAN`` channels: ``d_split`` is the smallest split that still gives about two
programs per SM (132 SMs) at B=1, e.g. 3 spans of 768 channels at 40x40 (300 programs), 2 of 1024 at 64x64. The
inverse-map design it replaces took three launches (fill, map, merge) and let duplicates race.

Index/weight formulas (PyTorch's ``UpSample.h`` and ``AdaptiveAveragePooling``), per axis with ``in``/``out`` sizes:

- nearest: ``src = min(floor(dst * scale), in - 1)``, ``scale = float32(in) / float32(out)``.
- bilinear: ``real = max(scale * (dst + 0.5) - 0.5, 0)``, ``i0 = min(floor(real), in - 1)``,
  ``i1 = i0 + (i0 < in - 1)``, ``l1 = clamp(real - i0, 0, 1)``, ``l0 = 1 - l1``; ``in == out`` copies.
- bicubic: ``real = scale * (dst + 0.5) - 0.5`` (no clamp), ``i = floor(real)``, ``t = real - i``, taps
  ``i - 1 .. i + 2`` clamped to ``[0, in - 1]``, Keys' cubic with ``A = -0.75``; rows interpolated first along w.
- area (adaptive average pooling, up- and downsampling): ``start = floor(o * in / out)``,
  ``end = ceil((o + 1) * in / out)`` in integer math, mean over the window.

``scale`` is computed on the host as an IEEE float32 division (``numpy.float32``) because Triton's fp32 ``/``
compiles to the approximate ``div.full.f32`` on NVIDIA GPUs, and a one-ulp error in the scale can move a
``floor`` (nearest mode) by a whole row.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from .common import INTERPRETING, next_pow2
from .rounding import round_to

_MODES = {"nearest": 0, "bilinear": 1, "bicubic": 2, "area": 3}


@triton.jit
def _tap(cache_base, row, col, W0, stride_cm, col_off, mask):
    """fp32 [BLOCK_P, BLOCK_D] gather of cache rows ``row * W0 + col`` (row/col: [BLOCK_P] int32)."""
    src = (row * W0 + col).to(tl.int64)
    return tl.load(cache_base + src[:, None] * stride_cm + col_off, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _cubic_weights(t):
    """Keys' cubic convolution weights (A = -0.75) of taps -1, 0, 1, 2 at fraction t (PyTorch's order of ops)."""
    A: tl.constexpr = -0.75
    x0 = t + 1.0
    c0 = ((A * x0 - 5.0 * A) * x0 + 8.0 * A) * x0 - 4.0 * A
    c1 = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    x2 = 1.0 - t
    c2 = ((A + 2.0) * x2 - (A + 3.0)) * x2 * x2 + 1.0
    x3 = x2 + 1.0
    c3 = ((A * x3 - 5.0 * A) * x3 + 8.0 * A) * x3 - 4.0 * A
    return c0, c1, c2, c3


@triton.jit
def _cubic_row(cache_base, row, ix, W0, stride_cm, col_off, mask, wx0, wx1, wx2, wx3):
    """Cubic interpolation along w of one source row: taps ix-1..ix+2 clamped to [0, W0-1]."""
    hi = W0 - 1
    v0 = _tap(cache_base, row, tl.minimum(tl.maximum(ix - 1, 0), hi), W0, stride_cm, col_off, mask)
    v1 = _tap(cache_base, row, tl.minimum(tl.maximum(ix, 0), hi), W0, stride_cm, col_off, mask)
    v2 = _tap(cache_base, row, tl.minimum(tl.maximum(ix + 1, 0), hi), W0, stride_cm, col_off, mask)
    v3 = _tap(cache_base, row, tl.minimum(tl.maximum(ix + 2, 0), hi), W0, stride_cm, col_off, mask)
    return v0 * wx0[:, None] + v1 * wx1[:, None] + v2 * wx2[:, None] + v3 * wx3[:, None]


@triton.jit
def _source_rows(idx_ptr, offs_p, pid_b, R, stride_ib, stride_ij, BLOCK_P: tl.constexpr, BLOCK_J: tl.constexpr):
    """int32 [BLOCK_P]: for each output row p the largest j with idx[b, j] == p, else -1 (reference.source_rows).

    A scan of all of idx[b] against the tile's rows: independent loads (no dependent chain as in a binary search),
    correct for idx in any order, duplicates resolved to the largest j, out-of-range entries matching no row.
    """
    src = tl.full([BLOCK_P], -1, tl.int32)
    p64 = offs_p.to(tl.int64)
    j0 = 0
    while j0 < R:  # a while in both modes: r / BLOCK_J iterations of one load (interpreter: no runtime range bounds)
        offs_j = j0 + tl.arange(0, BLOCK_J)
        pos = tl.load(idx_ptr + pid_b * stride_ib + offs_j.to(tl.int64) * stride_ij, mask=offs_j < R, other=-1)
        hit = pos[None, :] == p64[:, None]
        src = tl.maximum(src, tl.max(tl.where(hit, offs_j[None, :], -1), axis=1))
        j0 += BLOCK_J
    return src


@triton.jit
def _merge_tile(
    y_ptr,
    cache_ptr,
    out_ptr,
    src_j,
    offs_p,
    mask_p,
    d0,
    pid_b,
    HW,
    D,
    H0,
    W0,
    H,
    W,
    sh,
    sw,
    win_h,
    win_w,
    stride_yb,
    stride_yr,
    stride_yd,
    stride_cb,
    stride_cm,
    stride_cd,
    MODE: tl.constexpr,
    SAME_H: tl.constexpr,
    SAME_W: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_D: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """Write out[b, p-tile, d0:d0+BLOCK_D]: y rows where src_j >= 0, the interpolated cache elsewhere."""
    offs_d = d0 + tl.arange(0, BLOCK_D).to(tl.int64)
    mask_d = offs_d < D
    sel = src_j >= 0
    mask_sel = (mask_p & sel)[:, None] & mask_d[None, :]
    mask_up = (mask_p & (src_j < 0))[:, None] & mask_d[None, :]
    y_vals = tl.load(
        y_ptr
        + pid_b * stride_yb
        + tl.where(sel, src_j, 0).to(tl.int64)[:, None] * stride_yr
        + offs_d[None, :] * stride_yd,
        mask=mask_sel,
        other=0.0,
    )

    oh = offs_p // W
    ow = offs_p % W
    cache_base = cache_ptr + pid_b * stride_cb
    col_off = offs_d[None, :] * stride_cd

    if MODE == 0:  # nearest
        ih = tl.minimum(tl.floor(oh.to(tl.float32) * sh).to(tl.int32), H0 - 1)
        iw = tl.minimum(tl.floor(ow.to(tl.float32) * sw).to(tl.int32), W0 - 1)
        up = _tap(cache_base, ih, iw, W0, stride_cm, col_off, mask_up)
    elif MODE == 1:  # bilinear
        rh = tl.maximum(sh * (oh.to(tl.float32) + 0.5) - 0.5, 0.0)
        rw = tl.maximum(sw * (ow.to(tl.float32) + 0.5) - 0.5, 0.0)
        h0 = tl.minimum(tl.floor(rh).to(tl.int32), H0 - 1)
        w0 = tl.minimum(tl.floor(rw).to(tl.int32), W0 - 1)
        lh1 = tl.minimum(tl.maximum(rh - h0.to(tl.float32), 0.0), 1.0)
        lw1 = tl.minimum(tl.maximum(rw - w0.to(tl.float32), 0.0), 1.0)
        h1 = tl.where(h0 < H0 - 1, h0 + 1, h0)
        w1 = tl.where(w0 < W0 - 1, w0 + 1, w0)
        # in == out copies: PyTorch special-cases it (weight exactly 1, no neighbour read), so a non-finite
        # neighbour cannot leak in through a 0 weight.
        if SAME_H:
            lh1 = tl.zeros_like(lh1)
            h1 = h0
        if SAME_W:
            lw1 = tl.zeros_like(lw1)
            w1 = w0
        lh0 = 1.0 - lh1
        lw0 = 1.0 - lw1
        v00 = _tap(cache_base, h0, w0, W0, stride_cm, col_off, mask_up)
        v01 = _tap(cache_base, h0, w1, W0, stride_cm, col_off, mask_up)
        v10 = _tap(cache_base, h1, w0, W0, stride_cm, col_off, mask_up)
        v11 = _tap(cache_base, h1, w1, W0, stride_cm, col_off, mask_up)
        up = lh0[:, None] * (lw0[:, None] * v00 + lw1[:, None] * v01) + lh1[:, None] * (
            lw0[:, None] * v10 + lw1[:, None] * v11
        )
    elif MODE == 2:  # bicubic
        rh = sh * (oh.to(tl.float32) + 0.5) - 0.5
        rw = sw * (ow.to(tl.float32) + 0.5) - 0.5
        fh = tl.floor(rh)
        fw = tl.floor(rw)
        ih = fh.to(tl.int32)
        iw = fw.to(tl.int32)
        wy0, wy1, wy2, wy3 = _cubic_weights(rh - fh)
        wx0, wx1, wx2, wx3 = _cubic_weights(rw - fw)
        hi = H0 - 1
        r0 = _cubic_row(cache_base, tl.minimum(tl.maximum(ih - 1, 0), hi), iw, W0, stride_cm, col_off, mask_up,
                        wx0, wx1, wx2, wx3)  # fmt: skip
        r1 = _cubic_row(cache_base, tl.minimum(tl.maximum(ih, 0), hi), iw, W0, stride_cm, col_off, mask_up,
                        wx0, wx1, wx2, wx3)  # fmt: skip
        r2 = _cubic_row(cache_base, tl.minimum(tl.maximum(ih + 1, 0), hi), iw, W0, stride_cm, col_off, mask_up,
                        wx0, wx1, wx2, wx3)  # fmt: skip
        r3 = _cubic_row(cache_base, tl.minimum(tl.maximum(ih + 2, 0), hi), iw, W0, stride_cm, col_off, mask_up,
                        wx0, wx1, wx2, wx3)  # fmt: skip
        up = r0 * wy0[:, None] + r1 * wy1[:, None] + r2 * wy2[:, None] + r3 * wy3[:, None]
    else:  # area = adaptive average pooling, integer window bounds
        hs = (oh * H0) // H
        he = ((oh + 1) * H0 + H - 1) // H
        ws = (ow * W0) // W
        we = ((ow + 1) * W0 + W - 1) // W
        acc = tl.zeros([BLOCK_P, BLOCK_D], dtype=tl.float32)
        # win_h/win_w: the largest window, ceil(in / out) + 1. while-loops under the interpreter (numpy >= 2.4
        # rejects runtime range bounds there); compiled kernels use for-loops.
        if INTERPRET:
            kh = 0
            while kh < win_h:
                kw = 0
                while kw < win_w:
                    m = mask_up & ((hs + kh < he) & (ws + kw < we))[:, None]
                    acc += _tap(cache_base, hs + kh, ws + kw, W0, stride_cm, col_off, m)
                    kw += 1
                kh += 1
        else:
            for kh in range(0, win_h):
                for kw in range(0, win_w):
                    m = mask_up & ((hs + kh < he) & (ws + kw < we))[:, None]
                    acc += _tap(cache_base, hs + kh, ws + kw, W0, stride_cm, col_off, m)
        count = ((he - hs) * (we - ws)).to(tl.float32)
        up = acc / count[:, None]

    out_dtype = out_ptr.dtype.element_ty
    vals = tl.where(sel[:, None], y_vals.to(out_dtype), round_to(up, out_dtype, INTERPRET))
    out_off = (pid_b * HW + offs_p.to(tl.int64))[:, None] * D + offs_d[None, :]
    tl.store(out_ptr + out_off, vals, mask=mask_p[:, None] & mask_d[None, :])


@triton.jit
def _restore_merge_kernel(
    y_ptr,
    idx_ptr,
    cache_ptr,
    out_ptr,
    R,
    HW,
    D,
    D_SPAN,
    H0,
    W0,
    H,
    W,
    scale_h,
    scale_w,
    win_h,
    win_w,
    stride_ib,
    stride_ij,
    stride_yb,
    stride_yr,
    stride_yd,
    stride_cb,
    stride_cm,
    stride_cd,
    MODE: tl.constexpr,
    SAME_H: tl.constexpr,
    SAME_W: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_J: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """out[b, p] = y[b, src(p)] if some idx[b, j] == p (largest such j) else interpolate(cache[b])[p].

    One program: BLOCK_P output rows by D_SPAN channels (a multiple of BLOCK_D), looped in BLOCK_D chunks, so the
    row search and the per-row interpolation indices are paid once per D_SPAN channels.
    """
    pid_p = tl.program_id(0)
    pid_d = tl.program_id(1).to(tl.int64)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < HW
    src_j = _source_rows(idx_ptr, offs_p, pid_b, R, stride_ib, stride_ij, BLOCK_P, BLOCK_J)
    sh = (tl.zeros([], dtype=tl.float32) + scale_h).to(tl.float32)  # fp64 scalars (Inductor) -> fp32
    sw = (tl.zeros([], dtype=tl.float32) + scale_w).to(tl.float32)
    d_start = pid_d * D_SPAN
    d_end = tl.minimum(d_start + D_SPAN, D)
    if INTERPRET:
        d0 = d_start
        while d0 < d_end:
            _merge_tile(y_ptr, cache_ptr, out_ptr, src_j, offs_p, mask_p, d0, pid_b, HW, D, H0, W0, H, W, sh, sw,
                        win_h, win_w, stride_yb, stride_yr, stride_yd, stride_cb, stride_cm, stride_cd,
                        MODE, SAME_H, SAME_W, BLOCK_P, BLOCK_D, INTERPRET)  # fmt: skip
            d0 += BLOCK_D
    else:
        for d0 in range(d_start, d_end, BLOCK_D):
            _merge_tile(y_ptr, cache_ptr, out_ptr, src_j, offs_p, mask_p, d0, pid_b, HW, D, H0, W0, H, W, sh, sw,
                        win_h, win_w, stride_yb, stride_yr, stride_yd, stride_cb, stride_cm, stride_cd,
                        MODE, SAME_H, SAME_W, BLOCK_P, BLOCK_D, INTERPRET)  # fmt: skip


def _block_sizes(rows: int, channels: int, mode: str) -> tuple[int, int, int, int]:
    """(BLOCK_P, BLOCK_D, BLOCK_J, num_warps)."""
    block_d = min(128, max(16, next_pow2(channels)))
    if INTERPRETING:
        # ~0.6 ms per program instance in the interpreter: few, large programs.
        return min(256, max(16, next_pow2(rows))), block_d, 128, 4
    # GPU (untuned on hardware; ptxas -v, sm_90a, bf16, with the row scan and the channel loop): 16 rows x 128
    # channels at 8 warps is 8 elements (one 16-byte vector per tap) per thread: nearest 78, bilinear 117, area 117
    # registers; bicubic at 64 channels 164 (255 at 128). No spills.
    # The row scan compares a [16, 128] tile of (row, idx) pairs per step: 8 per thread at 8 warps.
    if mode == "bicubic":  # 16 taps: 128 channels took 255 registers with the scan and the channel loop
        return 16, min(block_d, 64), 128, 8
    return 16, block_d, 128, 8


def _scale(src: int, dst: int) -> float:
    """PyTorch's ``(float)in / out`` as an IEEE float32 division (not Triton's approximate fp32 divide)."""
    return float(np.float32(src) / np.float32(dst))


def _span(rows: int, channels: int, batch: int, block_p: int, block_d: int) -> int:
    """Channels per program: as wide as possible while the grid keeps about two programs per SM (132 SMs)."""
    chunks = triton.cdiv(channels, block_d)
    row_programs = triton.cdiv(rows, block_p) * batch
    split = min(chunks, max(1, triton.cdiv(264, row_programs)))
    return triton.cdiv(chunks, split) * block_d


def restore_merge(
    y: torch.Tensor,
    idx: torch.Tensor,
    cache: torch.Tensor,
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
    mode: str = "area",
) -> torch.Tensor:
    """Triton implementation of ``stagevar_kernels.restore_merge`` (arguments already validated).

    Args:
        y: ``(B, r, D)`` float32/float16/bfloat16, any strides.
        idx: int64 ``(B, r)``, any strides, any order; out-of-range entries are ignored, among duplicates the largest
            ``j`` wins (``reference.source_rows``).
        cache: ``(B, h0*w0, D)`` same dtype as ``y``, any strides.
        src_hw: ``(h0, w0)``; dst_hw: ``(h, w)``.
        mode: ``nearest | bilinear | bicubic | area`` (``align_corners=False``).
    Returns:
        ``(B, h*w, D)`` contiguous in ``y.dtype``.
    """
    batch, rank, channels = y.shape
    h0, w0 = src_hw
    h, w = dst_hw
    rows = h * w
    out = torch.empty((batch, rows, channels), dtype=y.dtype, device=y.device)
    if batch == 0:
        return out
    block_p, block_d, block_j, num_warps = _block_sizes(rows, channels, mode)
    span = _span(rows, channels, batch, block_p, block_d)
    grid = (triton.cdiv(rows, block_p), triton.cdiv(channels, span), batch)
    _restore_merge_kernel[grid](
        y,
        idx,
        cache,
        out,
        rank,
        rows,
        channels,
        span,
        h0,
        w0,
        h,
        w,
        _scale(h0, h),
        _scale(w0, w),
        -(-h0 // h) + 1,
        -(-w0 // w) + 1,
        idx.stride(0),
        idx.stride(1),
        y.stride(0),
        y.stride(1),
        y.stride(2),
        cache.stride(0),
        cache.stride(1),
        cache.stride(2),
        MODE=_MODES[mode],
        SAME_H=h0 == h,
        SAME_W=w0 == w,
        BLOCK_P=block_p,
        BLOCK_D=block_d,
        BLOCK_J=block_j,
        INTERPRET=INTERPRETING,
        num_warps=num_warps,
    )
    return out
