"""Normalized 2D RoPE against its formula (upstream ``models/embed_rope.py`` of STAR-T2I, restated in ``formula``)."""

from __future__ import annotations

import math

import torch

from stagevar.models.star.config import PATCH_NUMS_1024
from stagevar.models.star.rope import apply_rope, axial_angles, rope_tables


def formula(head_dim, pn, theta=10000.0, norm=64.0):
    """angle[t, j] for j < c/4: column(t) * f_j; for j >= c/4: row(t) * f_(j - c/4); coords scaled to [0, norm]."""
    f = [1.0 / theta ** (4 * i / head_dim) for i in range(head_dim // 4)]
    out = torch.zeros(pn * pn, head_dim // 2, dtype=torch.float64)
    for t in range(pn * pn):
        col, row = t % pn, t // pn
        if pn > 1:
            col, row = col * norm / (pn - 1), row * norm / (pn - 1)
        for j, fj in enumerate(f):
            out[t, j] = col * fj
            out[t, j + head_dim // 4] = row * fj
    return out


def test_angles_match_formula():
    for pn in (1, 2, 5, 12):
        got = axial_angles(64, pn, 10000.0, 64.0).double()
        torch.testing.assert_close(got, formula(64, pn), rtol=1e-6, atol=1e-5)


def test_first_scale_is_unrotated_and_corners_are_aligned():
    cos, sin = rope_tables(64, PATCH_NUMS_1024, 10000.0, 64.0)
    assert cos.shape == (9451, 32) and sin.shape == (9451, 32)
    assert torch.equal(cos[0], torch.ones(32)) and torch.equal(sin[0], torch.zeros(32))
    # the bottom-right token of every scale has the same angles (positions normalised to [0, 64])
    begin = 0
    last = []
    for pn in PATCH_NUMS_1024:
        begin += pn * pn
        last.append(cos[begin - 1])
    for row in last[1:]:
        torch.testing.assert_close(row, last[1], rtol=0, atol=1e-6)


def test_apply_rope_is_complex_rotation_of_adjacent_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 32, generator=g)
    ang = axial_angles(32, 3, 10000.0, 64.0)
    got = apply_rope(x, torch.cos(ang), torch.sin(ang))
    xc = torch.view_as_complex(x.reshape(2, 3, 9, 16, 2))
    ref = torch.view_as_real(xc * torch.polar(torch.ones_like(ang), ang)).flatten(-2)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    # per-row tables (R, L, c/2) broadcast over heads
    got_rows = apply_rope(x, torch.cos(ang)[None].expand(2, -1, -1), torch.sin(ang)[None].expand(2, -1, -1))
    torch.testing.assert_close(got_rows, got, rtol=0, atol=0)
    assert math.isclose(float(got.norm()), float(x.norm()), rel_tol=1e-5)
