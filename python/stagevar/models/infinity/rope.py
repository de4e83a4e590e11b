"""2D rotary position embedding of Infinity, in final-grid units.

As upstream ``infinity/models/basic.py`` (``precompute_rope2d_freqs_grid``, ``apply_rotary_emb``): head_dim ``c``;
``c/4`` frequencies ``1/10000^(2i/(c/2))``; angle pair j (dims 2j, 2j+1, interleaved) uses the row position for
``j < c/4`` and the column position after. A scale ``(h, w)`` of a template whose '1M' grid is ``(uph, upw)`` puts
row r at ``round(r * uph / h)`` and column q at ``round(q * upw / w)`` (float32, half to even), e.g. a 6x6 scale of
1:1 uses {0, 11, 21, 32, 43, 53}.
Everything here is fp32 (upstream disables autocast for RoPE).
"""

from __future__ import annotations

import torch


def inv_freq(head_dim: int, base: float = 10000.0, device=None) -> torch.Tensor:
    """The ``head_dim // 4`` inverse frequencies (fp32)."""
    half = head_dim // 2
    return 1.0 / (base ** (torch.arange(0, half, 2, dtype=torch.int64, device=device).float() / half))


def grid_positions(h: int, w: int, uph: int, upw: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column positions (int64 ``(h,)`` and ``(w,)``) of a ``(h, w)`` scale in ``(uph, upw)`` units."""
    rows = (torch.arange(h, device=device) * (uph / h)).round().long()
    cols = (torch.arange(w, device=device) * (upw / w)).round().long()
    return rows, cols


def scale_table(h: int, w: int, uph: int, upw: int, head_dim: int, device=None) -> torch.Tensor:
    """cos/sin table of one scale in raster order: fp32 ``(2, h*w, head_dim // 2)``."""
    f = inv_freq(head_dim, device=device)
    rows, cols = grid_positions(h, w, uph, upw, device=device)
    ang_r = rows.float()[:, None] * f  # (h, c/4)
    ang_c = cols.float()[:, None] * f  # (w, c/4)
    ang = torch.cat([ang_r[:, None, :].expand(h, w, -1), ang_c[None, :, :].expand(h, w, -1)], dim=-1)
    ang = ang.reshape(h * w, -1)
    return torch.stack([ang.cos(), ang.sin()], dim=0)


def gather_table(table: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Angles for the tokens of a call: ``table`` ``(2, h*w, c/2)``; ``positions`` int64 ``(R, L)`` flat indices or
    ``None`` (all tokens in raster order). Returns ``(2, R or 1, 1, L, c/2)``, broadcastable over ``(R, H, L, c/2)``."""
    if positions is None:
        return table[:, None, None]
    return table[:, positions][:, :, None]  # (2, R, 1, L, c/2)


def gather_pair(table: torch.Tensor, positions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` of the tokens of a call, as the fused ops take them: fp32 ``(L, c/2)`` each for all tokens in
    raster order (``positions`` None), else ``(R, L, c/2)`` gathered at ``positions`` int64 ``(R, L)`` (one gather)."""
    if positions is None:
        return table[0], table[1]
    cos, sin = table[:, positions].unbind(0)
    return cos, sin


def apply_rope(q: torch.Tensor, k: torch.Tensor, cs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate interleaved pairs of ``q``, ``k`` (fp32 ``(R, H, L, c)``) by the angles ``cs`` (:func:`gather_table`)."""
    cos, sin = cs[0], cs[1]

    def rot(x):
        x = x.float().reshape(*x.shape[:-1], -1, 2)
        x0, x1 = x[..., 0], x[..., 1]
        return torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], dim=-1).flatten(-2)

    return rot(q), rot(k)
