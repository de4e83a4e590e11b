"""The StageVAR loop on a tiny random-weight STAR: the same machinery as Infinity, single-block units."""

import pytest
import torch

import stagevar
from stagevar import presets, zoo
from stagevar.models.common import run_plain
from stagevar.models.star import new_session


@pytest.fixture(scope="module")
def tiny():
    return zoo.build("star-tiny")


def _session(tiny, batch=1, seed=0):
    width = tiny.model.blocks[0].cross_attn.mat_kv.weight.shape[1]
    text = zoo.random_star_text(batch, seed, width)
    return new_session(
        tiny.model, tiny.vae, text, batch=batch, seeds=[seed + i for i in range(batch)], cfg=4.5, top_k=600, top_p=0.8
    )


def test_vanilla_equals_the_plain_loop_bit_for_bit(tiny):
    plain = run_plain(_session(tiny, batch=2))
    assert torch.equal(stagevar.generate(_session(tiny, batch=2), presets("star")["vanilla"]), plain)


def test_paper_runs_the_last_step_on_null_rows_per_block(tiny, monkeypatch):
    s = _session(tiny, batch=3)
    seen = {}
    run_block = s.run_block

    def spy(block, x, si, positions=None):
        seen.setdefault(si, []).append((x.shape[0], x.shape[1], positions is not None))
        return run_block(block, x, si, positions)

    monkeypatch.setattr(s, "run_block", spy)
    images = stagevar.generate(s, presets("star")["paper"])
    last = len(s.scales) - 1
    pn = s.scales[last][0]
    assert images.shape[0] == 3 and torch.isfinite(images).all()
    assert all(rows == 6 and not pos for k in range(last) for rows, _, pos in seen[k])
    r = max(1, round(0.176 * pn * pn))
    assert seen[last] == [(3, r, True)] * len(tiny.model.blocks)  # one projection per block, B null rows


def test_star_skip_only_leaves_the_codes_of_the_computed_steps(tiny):
    s = _session(tiny)
    stagevar.generate(s, presets("star")["skip-only"], decode=False)
    t = _session(tiny)
    for k in range(len(t.scales) - 1):
        x = t.scale_input(k)
        for unit in t.units("block"):
            for block in unit:
                x = t.run_block(block, x, k)
        t.finish_scale(k, x)
    assert torch.equal(s.codes(), t.codes())


def test_star_has_no_chunks(tiny):
    with pytest.raises(ValueError, match="block"):
        stagevar.generate(_session(tiny), presets("star")["paper"].with_(unit="chunk"))
