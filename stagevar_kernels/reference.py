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


def project_and_sample(x: torch.Tensor, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian random projection of the rows of ``x`` plus norm-weighted row sampling (see ``philox``).

    Args:
        x: ``(B, M, D)`` float32/float16/bfloat16, any strides.
        rank: number of projected rows ``r``, ``1 <= r <= M``.
        seed: int in ``[0, 2**63)``.
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
        idx: int64 ``(B, r)`` their positions in the ``h*w`` grid; out-of-range entries are ignored, duplicates
            keep one of their candidates.
        cache: ``(B, h0*w0, D)`` the same unit's output at the previous scale, same dtype as ``y``.
        src_hw, dst_hw: ``(h0, w0)`` and ``(h, w)``.
        mode: ``nearest | bilinear | bicubic | area`` (``align_corners=False``).
    Returns:
        ``(B, h*w, D)`` contiguous, in ``y.dtype``.
    """
    out = upsample_rows(cache, src_hw, dst_hw, mode).to(y.dtype).contiguous()
    rows = out.shape[1]
    valid = (idx >= 0) & (idx < rows)
    batch_ix = torch.arange(y.shape[0], device=y.device).unsqueeze(1).expand_as(idx)
    out[batch_ix[valid], idx[valid]] = y[valid]
    return out
