"""The KV-cached STAR session: teacher-forced oracle, determinism, batches, guidance, positions, schedules."""

from __future__ import annotations

import pytest
import torch
from star_helpers import make_text, tiny

from stagevar.models.common import run_plain
from stagevar.models.session import GenerationSession
from stagevar.models.star import generate_images, new_session, teacher_forced_logits
from stagevar.models.star.config import PATCH_NUMS_1024
from stagevar.models.star.quant import idx_to_var_input, phi_index

KW = dict(cfg=4.5, top_k=20, top_p=0.9)


def _plain(session):
    run_plain(session, decode=False)
    return session


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_session_protocol(tiny_model):
    model, vae = tiny_model
    s = new_session(model, vae, make_text(2), batch=2, seeds=0, **KW)
    assert isinstance(s, GenerationSession)
    assert s.scales == [(1, 1), (2, 2), (3, 3), (4, 4)] and s.batch == 2 and s.width == 128 and s.rows == 4
    assert [u[0] for u in s.units("block")] == list(model.blocks)
    with pytest.raises(ValueError, match="STAR has no block chunks; use unit='block'"):
        s.units("chunk")


@pytest.mark.parametrize("batch", [1, 2])
def test_kv_cached_loop_equals_teacher_forced(batch):
    model, vae = tiny(patch_nums=(1, 2, 3, 5, 6))
    hidden, mask, pool = make_text(batch, seed=3)
    s = _plain(new_session(model, vae, (hidden, mask, pool), batch=batch, seeds=1, record=True, **KW))
    x_next = idx_to_var_input(vae.quantize, s.record_tokens, model.patch_nums).repeat(2, 1, 1)
    ref = teacher_forced_logits(model, x_next, hidden, mask, pool)
    begin = 0
    for si, pn in enumerate(model.patch_nums):
        got = s.record_logits[si]
        assert got.shape == (2 * batch, pn * pn, model.V)
        assert rel_err(got, ref[:, begin : begin + pn * pn]) <= 1e-5, si
        begin += pn * pn
    # the rows do differ (CFG contrast is real) and tokens vary across positions
    assert rel_err(s.record_logits[-1][:batch], s.record_logits[-1][batch:]) > 1e-3
    assert len(torch.unique(s.record_tokens[-1])) > 3


def test_cross_attention_row0_quirk_is_reproduced(tiny_model):
    """Changing the text of rows other than row 0 changes nothing but their pooled start token."""
    model, vae = tiny_model
    hidden, mask, pool = make_text(2, seed=5)
    h2, m2 = hidden.clone(), mask.clone()
    h2[1:] = torch.randn_like(h2[1:])
    m2[1:, :40] = 1
    a = generate_images(model, vae, (hidden, mask, pool), batch=2, seeds=7, **KW)["images"]
    b = generate_images(model, vae, (h2, m2, pool), batch=2, seeds=7, **KW)["images"]
    assert torch.equal(a, b)
    h3 = hidden.clone()
    h3[0] = torch.randn_like(h3[0])
    c = generate_images(model, vae, (h3, mask, pool), batch=2, seeds=7, **KW)["images"]
    assert not torch.equal(a, c)


def test_deterministic_for_a_seed(tiny_model):
    model, vae = tiny_model
    text = make_text(2)
    a = generate_images(model, vae, text, batch=2, seeds=11, **KW)["images"]
    b = generate_images(model, vae, text, batch=2, seeds=11, **KW)["images"]
    c = generate_images(model, vae, text, batch=2, seeds=12, **KW)["images"]
    assert a.shape == (2, 3, 16, 16) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def _tokens(model, vae, text, batch, seeds):
    return _plain(new_session(model, vae, text, batch=batch, seeds=seeds, record=True, **KW))


def test_batch_identical_items_equal_single_run(tiny_model):
    """Three copies of one prompt with one seed each equal to the single run: batch mechanics are row-exact."""
    model, vae = tiny_model
    sb = _tokens(model, vae, make_text(3, same_prompt=True), 3, [3, 3, 3])
    s1 = _tokens(model, vae, make_text(1), 1, 3)
    for si in range(len(model.patch_nums)):
        for i in range(3):
            assert torch.equal(sb.record_tokens[si][i : i + 1], s1.record_tokens[si])
    for i in range(3):
        torch.testing.assert_close(sb.codes()[i : i + 1], s1.codes(), rtol=1e-5, atol=1e-5)


def test_batch_item0_equals_its_single_run(tiny_model):
    """Item 0 owns row 0, so it never depends on the other items (per-item seeds)."""
    model, vae = tiny_model
    hidden, mask, pool = make_text(3, seed=9)
    sb = _tokens(model, vae, (hidden, mask, pool), 3, [21, 22, 23])
    s1 = _tokens(model, vae, (hidden[[0, 3]], mask[[0, 3]], pool[[0, 3]]), 1, 21)
    for si in range(len(model.patch_nums)):
        assert torch.equal(sb.record_tokens[si][:1], s1.record_tokens[si])


def test_batch_items_interact_through_row0_as_documented(tiny_model):
    """The upstream [0] quirk couples items: every row gets the cross-attention of row 0, whose query is item 0's own
    residual stream. So item i > 0 depends on item 0 (text and generated content) and on nothing else: item 2 of
    [p0, p1, p2] equals item 1 of [p0, p2] with the same per-item seeds, and differs from p2 run alone."""
    model, vae = tiny_model
    hidden, mask, pool = make_text(3, seed=9)
    seeds = [21, 22, 23]
    sb = _tokens(model, vae, (hidden, mask, pool), 3, seeds)
    pair = [0, 2, 3, 5]
    s2 = _tokens(model, vae, (hidden[pair], mask[pair], pool[pair]), 2, [21, 23])
    for si in range(len(model.patch_nums)):
        assert torch.equal(sb.record_tokens[si][2:3], s2.record_tokens[si][1:2])
    alone = _tokens(model, vae, (hidden[[2, 5]], mask[[2, 5]], pool[[2, 5]]), 1, 23)
    assert not all(torch.equal(sb.record_tokens[si][2:3], alone.record_tokens[si]) for si in range(4))


def test_guidance_cond_equals_cfg_zero(tiny_model):
    """cfg=0 mixes to the prompt logits; switching to 'cond' mid-way must give the same tokens."""
    model, vae = tiny_model
    text = make_text(2, seed=1)
    kw = dict(KW, cfg=0.0)
    a = _plain(new_session(model, vae, text, batch=2, seeds=[1, 2], record=True, **kw))
    s = new_session(model, vae, text, batch=2, seeds=[1, 2], record=True, **kw)
    for si in range(4):
        if si == 2:
            s.set_guidance("cond")
            assert s.rows == 2 and s.guidance == "cond"
        x = s.scale_input(si)
        for (b,) in s.units("block"):
            x = s.run_block(b, x, si)
        s.finish_scale(si, x)
    for si in range(4):
        assert torch.equal(a.record_tokens[si], s.record_tokens[si])
    torch.testing.assert_close(a.codes(), s.codes(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        s.set_guidance("null")


def test_guidance_null_uses_empty_prompt_rows_as_row0(tiny_model):
    """'null' from the start equals a CFG run (cfg=0) whose prompt rows are the empty prompt."""
    model, vae = tiny_model
    hidden, mask, pool = make_text(2, seed=4)
    s = new_session(model, vae, (hidden, mask, pool), batch=2, seeds=5, record=True, **dict(KW, cfg=0.0))
    s.set_guidance("null")
    _plain(s)
    empty = (hidden[[2, 3, 2, 3]], mask[[2, 3, 2, 3]], pool[[2, 3, 2, 3]])
    ref = _plain(new_session(model, vae, empty, batch=2, seeds=5, record=True, **dict(KW, cfg=0.0)))
    for si in range(4):
        assert torch.equal(s.record_tokens[si], ref.record_tokens[si])


def test_positions_raster_and_permuted(tiny_model):
    model, vae = tiny_model
    text = make_text(2, seed=2)
    base = _tokens(model, vae, text, 2, 8)
    for mode in ("raster", "perm"):
        s = new_session(model, vae, text, batch=2, seeds=8, record=True, **KW)
        for si, (h, w) in enumerate(s.scales):
            x = s.scale_input(si)
            n = h * w
            g = torch.Generator().manual_seed(si)
            perm = torch.arange(n) if mode == "raster" else torch.randperm(n, generator=g)
            pos = perm.expand(s.rows, n)
            xp = x[:, perm]
            for (b,) in s.units("block"):
                xp = s.run_block(b, xp, si, positions=pos)
            out = torch.empty_like(xp)
            out[:, perm] = xp
            s.finish_scale(si, out)
        for si in range(4):
            if mode == "raster":
                assert torch.equal(s.record_logits[si], base.record_logits[si])
            else:
                assert rel_err(s.record_logits[si], base.record_logits[si]) < 1e-5


def test_reduced_tokens_append_to_cache(tiny_model):
    """A block call on r < pn^2 rows with positions appends r keys; later scales still run."""
    model, vae = tiny_model
    s = new_session(model, vae, make_text(1), batch=1, seeds=0, **KW)
    for si in range(len(s.scales)):
        x = s.scale_input(si)
        if si == 2:
            pos = torch.tensor([[0, 4, 8]]).expand(2, 3)
            for (b,) in s.units("block"):
                y = s.run_block(b, x[:, pos[0]], si, positions=pos)
            assert y.shape == (2, 3, 128)
            x = x + 0  # pretend restoration: feed the unreduced stream to the head
        else:
            for (b,) in s.units("block"):
                x = s.run_block(b, x, si)
        s.finish_scale(si, x)
    assert s.kv.filled[0] == 1 + 4 + 3 + 16
    assert s.decode().shape == (1, 3, 16, 16)


def test_skipped_scale_adds_nothing_and_next_input_reads_codes(tiny_model):
    model, vae = tiny_model
    s = new_session(model, vae, make_text(1), batch=1, seeds=0, **KW)
    for si in range(3):
        x = s.scale_input(si)
        for (b,) in s.units("block"):
            x = s.run_block(b, x, si)
        s.finish_scale(si, x)
    before = s.codes().clone()
    # scale 3 (the last) skipped: codes unchanged and decodable
    assert torch.equal(s.codes(), before)
    img = s.decode()
    assert img.shape == (1, 3, 16, 16)
    # the input of a scale is word_embed(area(f_hat)) + lvl_embed, so it reflects the codes only
    x3 = s.scale_input(3)
    s.codes().zero_()
    assert not torch.equal(x3, s.scale_input(3))


def test_autoregressive_infer_cfg_matches_session(tiny_model):
    model, vae = tiny_model
    hidden, mask, pool = make_text(2, seed=6)
    img = model.autoregressive_infer_cfg(
        B=2,
        label_B=None,
        encoder_hidden_states=hidden,
        encoder_attention_mask=mask,
        encoder_pool_feat=pool,
        g_seed=3,
        cfg=4.5,
        top_k=20,
        top_p=0.9,
        more_smooth=False,
        w_mask=True,
        sample_version="1024",
    )
    assert torch.equal(img, generate_images(model, vae, (hidden, mask, pool), batch=2, seeds=3, **KW)["images"])
    with pytest.raises(ValueError, match="^more_smooth: "):
        model.autoregressive_infer_cfg(2, None, hidden, mask, pool, g_seed=3, more_smooth=True)


def test_no_state_on_modules_and_sessions_independent(tiny_model):
    model, vae = tiny_model
    text = make_text(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = new_session(model, vae, text, batch=1, seeds=1, **KW)
    b = new_session(model, vae, text, batch=1, seeds=1, **KW)
    for si in range(4):  # interleave two generations
        for s in (a, b):
            x = s.scale_input(si)
            for (blk,) in s.units("block"):
                x = s.run_block(blk, x, si)
            s.finish_scale(si, x)
    assert torch.equal(a.decode(), b.decode())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_phi_index_of_1024_schedule():
    assert [phi_index(si, 14, 4) for si in range(14)] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3]
    assert [phi_index(si, 10, 4) for si in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def test_real_1024_schedule_tiny_width():
    model, vae = tiny(patch_nums=PATCH_NUMS_1024, depth=1, width=64, heads=2)
    s = _plain(new_session(model, vae, make_text(1), batch=1, seeds=0, **KW))
    assert s.kv.filled[0] == 9451
    img = s.decode()
    assert img.shape == (1, 3, 256, 256)


def test_inference_mode_and_records(tiny_model):
    model, vae = tiny_model
    text = make_text(2)
    ref = generate_images(model, vae, text, batch=2, seeds=2, **KW)["images"]
    s = new_session(model, vae, text, batch=2, seeds=2, record=True, **KW)
    assert s.amp_dtype is None  # "auto" is fp16 autocast on CUDA only
    with torch.inference_mode():
        _plain(s)
        img = s.decode()
    assert torch.equal(img, ref)
    r = s.records[-1]
    assert r["si"] == 3 and r["head_logits"].shape == (4, 16, model.V) and r["logits"].shape == (2, 16, model.V)
    assert r["tokens"].shape == (2, 16)
