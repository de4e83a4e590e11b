"""Eager torch baselines of the two ops for the microbenchmarks (importable: ``bench.baselines``).

They do what a user without the fused kernels would write, in the input's dtype:

- ``project_and_sample_eager``: ``Q`` drawn with ``torch.randn`` (scaled, in ``x.dtype``) inside the timed call,
  one ``bmm``, fp32 squared row norms, Gumbel keys from ``torch.rand``, ``topk`` on the float keys and a ``sort`` of
  the chosen indices. **A different random stream from the ops'** (torch's generator, not the Philox contract):
  it is a speed yardstick only, and its outputs are not compared with the ops'. Generating ``Q`` with torch's
  native generator costs a few launches; the contract's stream in plain torch (``philox.projection_matrix``)
  would take ~250 int64 ops and flatter the kernels.
- ``restore_merge_eager``: ``F.interpolate`` of the whole cache to ``(h, w)`` in ``x.dtype``, then a scatter of ``y``
  into the selected rows (each selected row is written twice, the full upsampled tensor round-trips memory).

``compiled(fn)`` wraps either in ``torch.compile`` (the "compile" baseline of the benchmarks: the fair one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"  # the benchmarks' device: the GPU when there is one


def project_and_sample_eager(x: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x: ``(B, M, D)``; returns ``xr`` ``(B, rank, D)`` in ``x.dtype`` and int64 ``idx`` ``(B, rank)`` sorted.

    Draws from torch's global generator (seed it outside for reproducible runs).
    """
    batch, rows, _ = x.shape
    q = torch.randn(batch, rows, rank, device=x.device, dtype=torch.float32).mul_(1.0 / math.sqrt(rank))
    xr = torch.bmm(q.to(x.dtype).transpose(1, 2), x)
    xf = x.float()
    norms = (xf * xf).sum(dim=-1)
    gumbel = -torch.log(-torch.log(torch.rand(batch, rows, device=x.device).clamp_min(1e-12)))
    ok = torch.isfinite(norms) & (norms > 0)
    keys = torch.where(ok, torch.log(torch.where(ok, norms, 1.0)) + gumbel, -math.inf)
    idx = torch.topk(keys, rank, dim=-1, sorted=False).indices
    return xr, torch.sort(idx, dim=-1).values


def restore_merge_eager(
    y: torch.Tensor,
    idx: torch.Tensor,
    cache: torch.Tensor,
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
    mode: str = "area",
) -> torch.Tensor:
    """y: ``(B, r, D)``, idx: int64 ``(B, r)`` (in range), cache: ``(B, h0*w0, D)``; returns ``(B, h*w, D)``."""
    batch, _, channels = cache.shape
    grid = cache.transpose(1, 2).reshape(batch, channels, src_hw[0], src_hw[1])
    align = {} if mode in ("nearest", "area") else {"align_corners": False}
    up = F.interpolate(grid, size=tuple(dst_hw), mode=mode, **align)
    out = up.reshape(batch, channels, dst_hw[0] * dst_hw[1]).transpose(1, 2).contiguous()
    return out.scatter_(1, idx.unsqueeze(-1).expand(-1, -1, channels), y)


def compiled(fn, device: torch.device | str):
    """``torch.compile(fn)``; on CPU the smoke run uses Dynamo only (``backend="eager"``) to skip the C++ build."""
    if torch.device(device).type == "cuda":
        return torch.compile(fn, fullgraph=True, dynamic=False)
    return torch.compile(fn, fullgraph=True, dynamic=False, backend="eager")


def cuda_graphed(fn):
    """``fn`` captured once in a CUDA graph; the returned callable replays it (same output tensors every call).

    Timing the replay separates the kernels' own cost from the per-launch overhead of the eager calls, and the
    capture itself checks that the op never synchronises with the host.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph (compiles kernels, fills allocator pools)
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay():
        graph.replay()
        return out

    return replay
