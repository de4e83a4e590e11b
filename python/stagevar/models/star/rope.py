"""Normalized 2D axial RoPE of STAR (``models/embed_rope.py``), as real cos/sin tables.

For a scale with ``pn x pn`` tokens in row-major order, token ``t`` sits at column ``t % pn`` and row ``t // pn``;
when ``pn > 1`` both coordinates are rescaled to ``[0, norm]`` (``coord / (pn - 1) * norm``), so a location keeps its
angle across scales. Each axis uses ``head_dim // 4`` frequencies ``theta ** (-4 i / head_dim)``; the first half of the
complex channel pairs rotates by column, the second half by row. Channel pairs are adjacent ``(2j, 2j + 1)``.
"""

from __future__ import annotations

from functools import lru_cache

import torch


def axial_angles(head_dim: int, pn: int, theta: float, norm: float) -> torch.Tensor:
    """Rotation angles of one ``pn x pn`` scale: float32 ``(pn * pn, head_dim // 2)`` (CPU, computed in fp32)."""
    if head_dim % 4:
        raise ValueError(f"axial RoPE: head_dim {head_dim} must be a multiple of 4")
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4, device="cpu")[: head_dim // 4].float() / head_dim))
    t = torch.arange(pn * pn, dtype=torch.float32, device="cpu")
    tx = t % pn
    ty = torch.div(t, pn, rounding_mode="floor")
    if pn > 1 and norm != -1:
        # Same operation order as upstream (divide by the max, then multiply) so fp32 values agree.
        tx = tx / tx.max() * norm
        ty = ty / ty.max() * norm
    return torch.cat([torch.outer(tx, freqs), torch.outer(ty, freqs)], dim=-1)


@lru_cache(maxsize=16)
def _tables_cpu(head_dim: int, patch_nums: tuple[int, ...], theta: float, norm: float):
    ang = torch.cat([axial_angles(head_dim, pn, theta, norm) for pn in patch_nums], dim=0)
    # torch.polar(1, a) is (cos a, sin a); computed on the CPU like upstream, then moved.
    return torch.cos(ang), torch.sin(ang)


def rope_tables(head_dim: int, patch_nums, theta: float, norm: float, device=None):
    """``(cos, sin)``, each float32 ``(L, head_dim // 2)`` for all scales concatenated (L = sum pn^2)."""
    cos, sin = _tables_cpu(int(head_dim), tuple(int(p) for p in patch_nums), float(theta), float(norm))
    return cos.to(device), sin.to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` ``(..., R, H, L, c)`` by the angles of ``cos``/``sin``.

    ``cos``/``sin``: float32 ``(L, c/2)`` (shared by all rows) or ``(R, L, c/2)`` (per row). Computed in fp32 and
    returned in ``x``'s dtype, as upstream.
    """
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
    return out.to(x.dtype)
