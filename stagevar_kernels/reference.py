"""Pure-torch implementations of the two ops: the CPU kernels, the test oracle and the semantics in code.

They run on any device and materialise what the fast kernels never write (``Q``, the full upsampled cache).
Argument checking lives in :mod:`stagevar_kernels.validation`; these functions assume valid input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import philox

RESTORE_MODES = ("nearest", "bilinear", "bicubic", "area")


def squared_row_norms(x: torch.Tensor) -> torch.Tensor:
    """``sum_d float32(x[b, i, d])**2``: float32 ``(B, M)``."""
    xf = x.float()
    return (xf * xf).sum(dim=-1)


def project_and_sample(x: torch.Tensor, rank: int, seed: philox.Seed) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian random projection of the rows of ``x`` plus norm-weighted row sampling (see ``philox``).

    Non-finite inputs: ``xr`` is the float32 product with the fp32 ``Q`` (so an ``inf`` or ``NaN`` in row ``i`` of
    ``x`` spreads to every ``xr`` entry of its channel, as IEEE arithmetic gives), and the row counts as
    "non-finite norm" for the sampling (drawn last, lowest index first).

    Args:
        x: ``(B, M, D)`` float32/float16/bfloat16, any strides.
        rank: number of projected rows ``r``, ``1 <= r <= M``.
        seed: int in ``[0, 2**63)`` or a one-element int64 tensor on ``x.device`` (read there, no sync).
    Returns:
        ``xr``: ``(B, r, D)`` in ``x.dtype``, ``xr[b] = Q_b^T x[b]`` accumulated in float32;
        ``idx``: int64 ``(B, r)``, distinct row indices sorted ascending.
    """
    batch, rows, _ = x.shape
    normals = philox.standard_normals(seed, batch, rows, rank, device=x.device)
    xr = torch.bmm(normals.transpose(1, 2), x.float()) * philox.projection_scale(rank)
    keys = philox.sampling_keys(squared_row_norms(x), philox.gumbel_noise(seed, batch, rows, device=x.device))
    idx = philox.select_rows(keys, rank)
    return xr.to(x.dtype), idx


def upsample_rows(cache: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: str) -> torch.Tensor:
    """``Up`` of the contract: ``F.interpolate`` of the ``(h0, w0)`` token grid to ``(h, w)``, per channel.

    Args:
        cache: ``(B, h0*w0, D)``, rows in raster order.
    Returns:
        ``(B, h*w, D)`` in ``cache.dtype``; interpolation runs in float32 for half inputs.
    """
    batch, _, channels = cache.shape
    grid = cache.transpose(1, 2).reshape(batch, channels, src_hw[0], src_hw[1])
    compute = grid if grid.dtype == torch.float32 else grid.float()
    align = {} if mode in ("nearest", "area") else {"align_corners": False}
    up = F.interpolate(compute, size=tuple(dst_hw), mode=mode, **align)
    return up.reshape(batch, channels, dst_hw[0] * dst_hw[1]).transpose(1, 2).to(cache.dtype)


def restore_merge(
    y: torch.Tensor,
    idx: torch.Tensor,
    cache: torch.Tensor,
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
    mode: str = "area",
) -> torch.Tensor:
    """Representative-token restoration: ``out[b, idx[b, j]] = y[b, j]``, every other row ``Up(cache[b])``.

    Args:
        y: ``(B, r, D)`` computed rows.
        idx: int64 ``(B, r)`` their positions in the ``h*w`` grid, in any order; out-of-range entries are
            ignored; among duplicates the largest ``j`` wins (:func:`source_rows`).
        cache: ``(B, h0*w0, D)`` the same unit's output at the previous scale, same dtype as ``y``.
        src_hw, dst_hw: ``(h0, w0)`` and ``(h, w)``.
        mode: ``nearest | bilinear | bicubic | area`` (``align_corners=False``).
    Returns:
        ``(B, h*w, D)`` contiguous, in ``y.dtype``.
    """
    up = upsample_rows(cache, src_hw, dst_hw, mode).to(y.dtype)
    src = source_rows(idx, up.shape[1])  # (B, h*w)
    if y.shape[1] == 0:
        return up.contiguous()
    picked = torch.gather(y, 1, src.clamp(min=0).unsqueeze(-1).expand(-1, -1, y.shape[2]))  # (B, h*w, D)
    return torch.where((src >= 0).unsqueeze(-1), picked, up).contiguous()


def source_rows(idx: torch.Tensor, rows: int) -> torch.Tensor:
    """For every output row ``p``: the largest ``j`` with ``idx[b, j] == p``, or -1. int64 ``(B, rows)``.

    This is the duplicate rule of every backend: among several ``j`` naming the same row, the largest wins (what
    a sequential scatter in ``j`` order leaves behind). Entries outside ``[0, rows)`` name no row. ``idx`` may be
    in any order; ``project_and_sample`` returns it sorted, but no backend relies on that.

    Args:
        idx: int64 ``(B, r)``.
        rows: ``h * w``.
    """
    batch, rank = idx.shape
    valid = (idx >= 0) & (idx < rows)
    target = torch.where(valid, idx, torch.full_like(idx, rows))  # a spare column takes the out-of-range entries
    j = torch.arange(rank, device=idx.device, dtype=torch.int64).expand(batch, rank)
    src = torch.full((batch, rows + 1), -1, dtype=torch.int64, device=idx.device)
    src.scatter_reduce_(1, target, j, reduce="amax", include_self=True)
    return src[:, :rows]
