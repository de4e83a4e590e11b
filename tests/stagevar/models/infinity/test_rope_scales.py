"""Scale schedules of every template and RoPE positions in final-grid units."""

import pytest
import torch

from stagevar.models.infinity import (
    H_DIV_W_TEMPLATES,
    PN_LENGTHS,
    get_scale_schedule,
    nearest_template,
    rope,
    rope_grid,
)
from stagevar.models.infinity.scales import image_size, normalize_schedule, scale_starts

# total tokens and last grid of each 1M template (upstream ``infinity/utils/dynamic_resolution.py``)
TOKENS_1M = {
    1.0: ((64, 64), 10521),
    1.25: ((70, 56), 10774),
    1.333: ((72, 54), 10973),
    1.5: ((78, 52), 10997),
    1.75: ((84, 48), 11252),
    2.0: ((90, 45), 11269),
    2.5: ((100, 40), 10805),
    3.0: ((111, 37), 11123),
}


def test_templates_and_sizes():
    assert len(H_DIV_W_TEMPLATES) == 15
    for r, (last, total) in TOKENS_1M.items():
        for ratio, grid in ((r, last), (int(1 / r * 1000) / 1000, last[::-1])):
            if ratio == 1.0 and grid != last:
                continue
            sched = get_scale_schedule(ratio, "1M")
            assert sched[-1] == grid and sum(h * w for h, w in sched) == total
            for pn, n in PN_LENGTHS.items():
                assert get_scale_schedule(ratio, pn) == sched[:n]
                assert rope_grid(get_scale_schedule(ratio, pn)) == grid  # prefixes identify their template
    assert image_size(get_scale_schedule(1.0, "1M")) == (1024, 1024)
    assert nearest_template(0.67) == 0.666 and nearest_template(1.0) == 1.0


def test_starts_1to1_1m():
    assert scale_starts(get_scale_schedule(1.0, "1M")) == [0, 1, 5, 21, 57, 121, 265, 521, 921, 1497, 2521, 4121, 6425]


def test_schedule_normalisation_and_errors():
    import numpy as np

    assert normalize_schedule([(1, np.int64(2), 3)]) == [(2, 3)]
    with pytest.raises(ValueError):
        rope_grid([(1, 1), (3, 5)])
    with pytest.raises(ValueError):
        get_scale_schedule(1.0, "2M")


def test_positions_in_final_grid_units():
    rows, cols = rope.grid_positions(6, 6, 64, 64)
    assert rows.tolist() == [0, 11, 21, 32, 43, 53] and cols.tolist() == [0, 11, 21, 32, 43, 53]
    assert rope.grid_positions(2, 2, 64, 64)[0].tolist() == [0, 32]
    assert rope.grid_positions(64, 64, 64, 64)[0].tolist() == list(range(64))
    # non-square: 1.5 template, 9x6 scale in the 78x52 grid
    r, c = rope.grid_positions(9, 6, 78, 52)
    assert r.tolist() == torch.round(torch.arange(9) * (78 / 9)).long().tolist() and c.max() < 52


def test_rope_table_layout():
    hd = 16
    t = rope.scale_table(6, 6, 64, 64, hd)
    assert t.shape == (2, 36, hd // 2)
    f = rope.inv_freq(hd)
    # token (row 1, col 2) -> positions (11, 21): first hd/4 angles rows, next hd/4 columns
    ang = torch.cat([11 * f, 21 * f])
    torch.testing.assert_close(t[0, 1 * 6 + 2], ang.cos())
    torch.testing.assert_close(t[1, 1 * 6 + 2], ang.sin())


def test_apply_rope_interleaved_pairs():
    q = torch.randn(1, 1, 3, 8)
    cs = torch.stack([torch.full((3, 4), 0.0).cos(), torch.full((3, 4), 0.0).sin()])
    q2, _ = rope.apply_rope(q, q, cs[:, None, None])
    torch.testing.assert_close(q2, q)  # zero angle: identity
    ang = torch.full((3, 4), torch.pi / 2)
    cs = torch.stack([ang.cos(), ang.sin()])[:, None, None]
    q2, _ = rope.apply_rope(q, q, cs)
    # a quarter turn maps the pair (x0, x1) to (-x1, x0)
    torch.testing.assert_close(q2[..., 0::2], -q[..., 1::2], atol=1e-6, rtol=0)
    torch.testing.assert_close(q2[..., 1::2], q[..., 0::2], atol=1e-6, rtol=0)
