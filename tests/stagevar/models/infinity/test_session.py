"""The KV-cached session against the teacher-forced oracle, batching, seeding, guidance, positions, templates."""

import pytest
import torch

from stagevar.models.common import run_plain, to_uint8
from stagevar.models.infinity import (
    H_DIV_W_TEMPLATES,
    TextFeatures,
    get_scale_schedule,
    new_session,
    teacher_forced_logits,
)
from stagevar.models.session import GenerationSession


def make_text(lens, channels=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TextFeatures(torch.randn(sum(lens), channels, generator=g), list(lens))


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _run(model, vae, sched, text, **kw):
    s = new_session(model, vae, sched, text, **kw)
    run_plain(s)
    return s


@pytest.mark.parametrize("which", ["tiny", "tiny8"])
@pytest.mark.parametrize("negative", [False, True])
def test_cached_loop_equals_teacher_forced(which, negative, request):
    model, vae = request.getfixturevalue(which)
    sched = get_scale_schedule(1.0, "0.06M")
    text = make_text([5, 3])
    neg = make_text([2, 7], seed=1) if negative else None  # different lengths: exercises the padding mask
    s = _run(model, vae, sched, text, negative_text=neg, seeds=0, cfg_list=3.0, tau_list=0.5, record=True)
    assert isinstance(s, GenerationSession)
    rows = TextFeatures.cat(
        [text, neg if negative else TextFeatures(torch.cat([model.cfg_uncond[:n] for n in text.lens]), text.lens)]
    )
    x_wo_prefix = torch.cat([r["input"] for r in s.records[1:]], dim=1).repeat(2, 1, 1)
    ref = teacher_forced_logits(model, rows, x_wo_prefix, sched)
    start = 0
    for si, (h, w) in enumerate(sched):
        got = s.records[si]["head_logits"]
        assert got.shape == (4, h * w, model.V)
        assert _rel(got, ref[:, start : start + h * w]) <= 1e-5, si
        start += h * w


def test_batch_equals_items_one_by_one(tiny):
    model, vae = tiny
    sched = get_scale_schedule(1.0, "0.06M")
    lens, seeds = [4, 6, 2], [11, 22, 33]
    text = make_text(lens)
    full = _run(model, vae, sched, text, seeds=seeds, cfg_list=3.0, tau_list=1.0, record=True)
    img = full.decode()
    for b in range(3):
        one = _run(model, vae, sched, text.select([b]), seeds=[seeds[b]], cfg_list=3.0, tau_list=1.0, record=True)
        for si in range(len(sched)):
            assert torch.equal(one.records[si]["bits"][0], full.records[si]["bits"][b])
        torch.testing.assert_close(one.decode()[0], img[b], rtol=1e-5, atol=1e-5)


def test_int_seed_equals_single_generator_list_for_b1_and_is_deterministic(tiny):
    model, vae = tiny
    sched = get_scale_schedule(1.0, "0.06M")
    text = make_text([4])
    a = _run(model, vae, sched, text, seeds=5, record=True)
    b = _run(model, vae, sched, text, seeds=[5], record=True)
    c = _run(model, vae, sched, text, seeds=6, record=True)
    assert all(torch.equal(x["bits"], y["bits"]) for x, y in zip(a.records, b.records))
    assert torch.equal(a.decode(), b.decode())
    assert not all(torch.equal(x["bits"], y["bits"]) for x, y in zip(a.records, c.records))


def test_session_protocol_fields(tiny):
    model, vae = tiny
    sched = get_scale_schedule(1.0, "0.06M")
    s = new_session(model, vae, sched, make_text([3, 3]), seeds=0, cfg_list=2.0)
    assert s.batch == 2 and s.rows == 4 and s.guidance == "cfg" and s.width == 64
    assert s.scales == sched
    assert [len(u) for u in s.units("chunk")] == [2, 2] and len(s.units("block")) == 4
    assert s.codes() is None
    x = s.scale_input(0)
    assert x.shape == (4, 1, 64)
    s1 = new_session(model, vae, sched, make_text([3, 3]), seeds=0, cfg_list=1.0)
    assert s1.guidance == "cond" and s1.rows == 2


@pytest.mark.parametrize("guidance", ["null", "cond"])
def test_set_guidance_equals_cfg_weight(tiny, guidance):
    """Dropping a branch after scale 2 equals CFG with cfg = 0 (null) or cfg = 1 (cond) from scale 3 on."""
    model, vae = tiny
    sched = get_scale_schedule(1.0, "0.06M")
    text = make_text([3, 5])
    n = len(sched)
    cfg = [3.0] * 3 + [0.0 if guidance == "null" else 1.0] * (n - 3)
    ref = _run(model, vae, sched, text, seeds=[1, 2], cfg_list=cfg, record=True)
    s = new_session(model, vae, sched, text, seeds=[1, 2], cfg_list=3.0, record=True)
    for si in range(n):
        if si == 3:
            s.set_guidance(guidance)
            assert s.rows == 2 and s.guidance == guidance
        x = s.scale_input(si)
        for unit in s.units("block"):
            for blk in unit:
                x = s.run_block(blk, x, si)
        s.finish_scale(si, x)
    for si in range(n):
        torch.testing.assert_close(s.records[si]["logits"], ref.records[si]["logits"], rtol=1e-5, atol=1e-5)
        assert torch.equal(s.records[si]["bits"], ref.records[si]["bits"])
    with pytest.raises(ValueError):
        s.set_guidance("cfg")


def test_positions_gather_rope(tiny):
    """A block run on a permuted subset of tokens with their positions gives the same rows as the full run."""
    model, vae = tiny
    sched = get_scale_schedule(1.0, "0.06M")
    text = make_text([3])
    si = 2  # 4x4, after two cached scales
    full = new_session(model, vae, sched, text, seeds=0)
    part = new_session(model, vae, sched, text, seeds=0)
    for s in (full, part):
        for k in range(si):
            x = s.scale_input(k)
            for u in s.units("block"):
                x = s.run_block(u[0], x, k)
            s.finish_scale(k, x)
    blk = full.units("block")[0][0]
    x = full.scale_input(si)
    y_full = full.run_block(blk, x, si)
    perm = torch.tensor([[5, 0, 13, 7, 2], [9, 1, 15, 3, 4]])
    xs = torch.gather(x, 1, perm[..., None].expand(-1, -1, x.shape[-1]))
    y_part = part.run_block(blk, xs, si, positions=perm)
    # queries attend to the cache and to the given keys only; with all keys present the rows match
    perm_all = torch.stack([torch.randperm(16), torch.randperm(16)])
    mark = part.kv.mark()
    part.kv.rewind([n - 5 if i == 0 else n for i, n in enumerate(mark)])  # drop the 5 keys just appended
    xa = torch.gather(x, 1, perm_all[..., None].expand(-1, -1, x.shape[-1]))
    ya = part.run_block(blk, xa, si, positions=perm_all)
    expected = torch.gather(y_full, 1, perm_all[..., None].expand(-1, -1, x.shape[-1]))
    torch.testing.assert_close(ya, expected, rtol=1e-5, atol=1e-5)
    assert y_part.shape == (2, 5, 64)
    assert mark[0] == 1 + 4 + 5


@pytest.mark.parametrize("h_div_w", H_DIV_W_TEMPLATES)
def test_every_template_runs(tiny, h_div_w):
    model, vae = tiny
    sched = get_scale_schedule(h_div_w, "0.06M")
    s = _run(model, vae, sched, make_text([3]), seeds=0, cfg_list=3.0)
    img = s.decode()
    h, w = sched[-1]
    assert img.shape == (1, 3, 4 * h, 4 * w)
    assert img.min() >= 0 and img.max() <= 1
    u8 = to_uint8(img)
    assert u8.shape == (1, 4 * h, 4 * w, 3) and u8.dtype == torch.uint8


def test_patchify_8b_path(tiny8):
    model, vae = tiny8
    sched = get_scale_schedule(0.5, "0.06M")
    s = _run(model, vae, sched, make_text([3, 4]), seeds=[0, 1], cfg_list=3.0, record=True)
    h, w = sched[-1]
    assert s.codes().shape == (2, 4, 1, 2 * h, 2 * w)
    assert s.records[-1]["bits"].shape == (2, h * w, 16)
    assert s.records[1]["input"].shape == (2, sched[1][0] * sched[1][1], 16)
    assert s.decode().shape == (2, 3, 4 * h, 4 * w)


def test_autoregressive_infer_cfg_official_format(tiny):
    model, vae = tiny
    sched = [(1, h, w) for h, w in get_scale_schedule(1.0, "0.06M")]
    text = make_text([4])
    ret, idx, img = model.autoregressive_infer_cfg(
        vae=vae,
        scale_schedule=sched,
        label_B_or_BLT=text.as_upstream(),
        B=1,
        g_seed=3,
        cfg_list=[3.0] * 7,
        tau_list=[0.5] * 7,
        top_k=900,
        top_p=0.97,
        cfg_insertion_layer=[0],
        vae_type=8,
        ret_img=True,
    )
    s = _run(model, vae, sched, text, seeds=3, cfg_list=3.0, tau_list=0.5)
    assert ret == [] and idx == []
    # upstream's conversion (truncation, BGR), which the official entry point keeps
    assert torch.equal(img, s.decode().permute(0, 2, 3, 1).mul(255).to(torch.uint8).flip(dims=(3,)))
    with pytest.raises(ValueError, match="cfg_insertion_layer"):
        model.autoregressive_infer_cfg(
            vae=vae,
            scale_schedule=sched,
            label_B_or_BLT=text.as_upstream(),
            cfg_list=[3.0] * 7,
            tau_list=[1.0] * 7,
            cfg_insertion_layer=[-5],
            vae_type=8,
        )


def test_skipped_scales_decode_accumulated_codes(tiny):
    model, vae = tiny
    sched = get_scale_schedule(1.0, "0.06M")
    s = new_session(model, vae, sched, make_text([3]), seeds=0, cfg_list=3.0)
    for si in range(len(sched) - 2):  # skip the last two scales
        x = s.scale_input(si)
        for u in s.units("chunk"):
            for b in u:
                x = s.run_block(b, x, si)
        s.finish_scale(si, x)
    assert s.codes().shape == (1, 8, 1, 16, 16)
    assert s.decode().shape == (1, 3, 64, 64)


def test_interleaved_sessions_share_no_state(tiny):
    model, vae = tiny
    sched = get_scale_schedule(1.0, "0.06M")
    alone = _run(model, vae, sched, make_text([3]), seeds=1, cfg_list=3.0).decode()
    a = model.new_session(vae, sched, make_text([3]), seeds=1, cfg_list=3.0)
    for si in range(3):
        x = a.scale_input(si)
        for u in a.units("chunk"):
            for b in u:
                x = a.run_block(b, x, si)
        a.finish_scale(si, x)
    _run(model, vae, sched, make_text([5, 2], seed=4), seeds=[7, 8], cfg_list=2.0)  # another generation meanwhile
    for si in range(3, len(sched)):
        x = a.scale_input(si)
        for u in a.units("chunk"):
            for b in u:
                x = a.run_block(b, x, si)
        a.finish_scale(si, x)
    assert torch.equal(a.decode(), alone)
    assert not any(hasattr(b.sa, "cached_k") for u in a.units("chunk") for b in u)


@pytest.mark.parametrize("mode", ["bf16_blocks_autocast", "all_bf16_no_autocast"])
def test_bf16_paths_run_on_cpu(mode):
    """The dtype paths the GPU uses (bf16 blocks under autocast), and an all-bf16 model without autocast."""
    from stagevar.models.infinity import BSQVAE, build_infinity

    if mode == "bf16_blocks_autocast":
        model, amp = build_infinity("tiny", blocks_dtype=torch.bfloat16), torch.bfloat16
    else:
        model, amp = build_infinity("tiny", dtype=torch.bfloat16), None
    vae = BSQVAE(model.config.vae).eval()
    s = new_session(
        model, vae, get_scale_schedule(1.0, "0.06M"), make_text([3, 5]), seeds=[0, 1], amp_dtype=amp, record=True
    )
    run_plain(s, decode=False)
    assert s.kv.view(0)[0].dtype == torch.bfloat16
    assert s.records[-1]["logits"].dtype == torch.float32
    img = s.decode()
    assert img.dtype == torch.float32 and torch.isfinite(img).all()


def test_official_call_arguments(tiny):
    from stagevar.models.infinity import autoregressive_infer_cfg

    model, vae = tiny
    sched = [(1, h, w) for h, w in get_scale_schedule(1.0, "0.06M")]
    kw = dict(
        vae=vae,
        scale_schedule=sched,
        label_B_or_BLT=make_text([4]).as_upstream(),
        g_seed=0,
        cfg_list=[3.0] * 7,
        tau_list=[1.0] * 7,
        cfg_insertion_layer=[0],
        vae_type=8,
    )
    assert autoregressive_infer_cfg(model, **kw) == ([], [], [])  # ret_img=False
    for bad, match in (
        (dict(vae_type=0), "vae_type"),
        (dict(gt_leak=2), "gt_leak"),
        (dict(trunk_scale=3), "trunk"),
        (dict(cfg_list=[3.0] * 5), "cfg_list"),
    ):
        with pytest.raises(ValueError, match=match):
            autoregressive_infer_cfg(model, **(kw | bad))
    no_cfg = autoregressive_infer_cfg(model, **(kw | dict(cfg_list=[1.0] * 7, cfg_insertion_layer=[-5], ret_img=True)))
    assert no_cfg[2].shape == (1, 64, 64, 3)  # without CFG the insertion layer does not matter, as upstream
