"""The StageVAR loop (Algorithm 1) on a tiny random-weight Infinity: vanilla is the plain loop bit for bit, and
the paper schedule does exactly what the paper says at every step."""

import pytest
import torch

import stagevar
import stagevar_kernels
from stagevar import fidelity, presets, zoo
from stagevar.models.common import run_plain
from stagevar.models.infinity import bitwise, get_scale_schedule, new_session
from stagevar.schedule import StageSchedule
from stagevar_kernels import reference


@pytest.fixture(scope="module")
def tiny():
    return zoo.build("infinity-tiny")


def _session(tiny, batch=1, seed=0, pn="0.06M", h_div_w=1.0, **kw):
    text = zoo.random_infinity_text(tiny.model.text_norm.weight.shape[0], batch, seed)
    return new_session(
        tiny.model,
        tiny.vae,
        get_scale_schedule(h_div_w, pn),
        text,
        cfg_list=3.0,
        tau_list=0.5,
        seeds=[seed + i for i in range(batch)],
        **kw,
    )


def test_vanilla_equals_the_plain_loop_bit_for_bit(tiny):
    plain = run_plain(_session(tiny, batch=2))
    s = _session(tiny, batch=2)
    images = stagevar.generate(s, presets("infinity")["vanilla"])
    assert torch.equal(images, plain)


def test_paper_shapes_skip_semantics_and_guidance(tiny, monkeypatch):
    s = _session(tiny, batch=2, record=True)
    rows_seen, kv_rows = {}, {}
    run_block = s.run_block

    def spy(block, x, si, positions=None):
        rows_seen.setdefault(si, set()).add(x.shape[0])
        out = run_block(block, x, si, positions)
        kv_rows.setdefault(si, set()).add(s.kv.k.shape[1])
        return out

    monkeypatch.setattr(s, "run_block", spy)
    images = stagevar.generate(s, presets("infinity")["paper"])
    n = len(s.scales)
    assert images.shape == (2, 3, 16 * 4, 16 * 4) and images.dtype == torch.float32
    # The last two steps are skipped: no forward, no sampling.
    assert sorted(rows_seen) == list(range(n - 2)) and len(s.records) == n - 2
    # From the first fidelity step only the B null rows run, and the KV cache holds only those rows.
    assert all(rows_seen[k] == {4} and kv_rows[k] == {4} for k in range(n - 3))
    assert rows_seen[n - 3] == {2} and kv_rows[n - 3] == {2}
    # The decoded codes are the sum of the computed steps only (through the first fidelity step).
    summed = None
    vae_scales = s.vae_scales
    for k, rec in enumerate(s.records):
        h, w = s.scales[k]
        codes = bitwise.bits_to_codes(rec["bits"], h, w, s.codebook_dim, s.patchify)
        summed = bitwise.accumulate(summed, codes, vae_scales[-1], k == n - 1)
    torch.testing.assert_close(s.codes(), summed, rtol=0, atol=0)


def test_projected_rows_use_the_positions_of_idx_and_restoration_sources(tiny, monkeypatch):
    calls = {"project": [], "restore": [], "positions": []}
    project, restore = stagevar_kernels.project_and_sample, stagevar_kernels.restore_merge

    def spy_project(x, rank, seed, **kw):
        xr, idx = project(x, rank, seed, **kw)
        calls["project"].append((x.clone(), rank, seed, idx.clone()))
        return xr, idx

    def spy_restore(y, idx, cache, src, dst, mode, **kw):
        out = restore(y, idx, cache, src, dst, mode, **kw)
        calls["restore"].append((y.clone(), idx.clone(), cache.clone(), src, dst, mode, out.clone()))
        return out

    monkeypatch.setattr(fidelity.stagevar_kernels, "project_and_sample", spy_project)
    monkeypatch.setattr(fidelity.stagevar_kernels, "restore_merge", spy_restore)
    s = _session(tiny, batch=1)
    run_block = s.run_block
    monkeypatch.setattr(
        s, "run_block", lambda b, x, si, p=None: (calls["positions"].append(p), run_block(b, x, si, p))[1]
    )
    schedule = presets("infinity")["paper"]
    stagevar.generate(s, schedule)
    units = len(s.units("chunk"))
    k = len(s.scales) - 3
    h, w = s.scales[k]
    assert len(calls["project"]) == units and len(calls["restore"]) == units
    fed = [p for p in calls["positions"] if p is not None]
    assert len(fed) == sum(len(u) for u in s.units("chunk"))
    for u, ((_, rank, seed, idx), (y, ridx, cache, src, dst, mode, out)) in enumerate(
        zip(calls["project"], calls["restore"])
    ):
        assert rank == max(1, round(0.176 * h * w)) and seed == fidelity.unit_seed(schedule.seed, k, u)
        assert torch.equal(ridx, idx) and dst == (h, w) and src == s.scales[k - 1] and mode == "area"
        assert any(torch.equal(p, idx) for p in fed)  # the unit's blocks ran at the positions of idx
        # Rows at idx come from the computed rows, every other row from the upsampled previous output.
        assert torch.equal(out[:, idx[0]], y)
        up = reference.upsample_rows(cache, src, dst, "area")
        keep = torch.ones(h * w, dtype=torch.bool)
        keep[idx[0]] = False
        torch.testing.assert_close(out[:, keep], up[:, keep])
    # Each unit restores from its own output at the previous step, the input of the next unit.
    for u in range(1, units):
        assert torch.equal(calls["project"][u][0], calls["restore"][u - 1][6])


@pytest.mark.parametrize(
    "h_div_w", [1.0, 1.25, 0.8, 1.333, 0.75, 1.5, 0.666, 1.75, 0.571, 2.0, 0.5, 2.5, 0.4, 3.0, 0.333]
)
@pytest.mark.parametrize("batch", [1, 3])
def test_paper_runs_for_every_aspect_ratio_template(tiny, h_div_w, batch):
    s = _session(tiny, batch=batch, h_div_w=h_div_w)
    images = stagevar.generate(s, presets("infinity")["paper"])
    h, w = get_scale_schedule(h_div_w, "0.06M")[-1]
    assert images.shape == (batch, 3, 4 * h, 4 * w)
    assert torch.isfinite(images).all()


def test_batch_of_three_and_determinism(tiny):
    schedule = presets("infinity")["paper"]
    a = stagevar.generate(_session(tiny, batch=3, seed=5), schedule)
    b = stagevar.generate(_session(tiny, batch=3, seed=5), schedule)
    assert a.shape[0] == 3 and torch.equal(a, b)
    c = stagevar.generate(_session(tiny, batch=3, seed=5), schedule, seed=1)
    assert not torch.equal(a, c)  # another projection seed draws other projections


def test_no_state_survives_between_generations(tiny):
    schedule = presets("infinity")["paper"]
    first = stagevar.generate(_session(tiny, batch=1, seed=3), schedule)
    stagevar.generate(_session(tiny, batch=2, seed=4, h_div_w=0.5), schedule)
    again = stagevar.generate(_session(tiny, batch=1, seed=3), schedule)
    assert torch.equal(first, again)


@pytest.mark.parametrize(
    "variant",
    [
        {"projection": "svd"},
        {"restoration": "lls"},
        {"unit": "block"},
        {"guidance": "cond"},
        {"guidance": "cfg"},
        {"restore_mode": "bicubic"},
    ],
)
def test_schedule_variants_run(tiny, variant):
    schedule = presets("infinity")["paper"].with_(**variant)
    images = stagevar.generate(_session(tiny, batch=2), schedule)
    assert images.shape[0] == 2 and torch.isfinite(images).all()


def test_a_session_without_guidance_keeps_its_rows(tiny):
    text = zoo.random_infinity_text(tiny.model.text_norm.weight.shape[0], 2, 0)
    s = new_session(tiny.model, tiny.vae, get_scale_schedule(1.0, "0.06M"), text, cfg_list=1.0, seeds=[0, 1])
    assert s.guidance == "cond"
    images = stagevar.generate(s, presets("infinity")["paper"])
    assert images.shape[0] == 2 and s.guidance == "cond"


def test_per_unit_ratios_and_skip_only(tiny):
    units = len(_session(tiny).units("chunk"))
    per_unit = StageSchedule((tuple(0.1 * (u + 1) for u in range(units)), 0.0), guidance="null")
    assert torch.isfinite(stagevar.generate(_session(tiny), per_unit)).all()
    skip = stagevar.generate(_session(tiny), presets("infinity")["skip-only"])
    assert torch.isfinite(skip).all()


def test_reference_and_triton_backends_give_the_same_images(tiny):
    pytest.importorskip("triton")
    schedule = presets("infinity")["paper"]
    ref = stagevar.generate(_session(tiny, batch=1), schedule, backend="reference")
    tri = stagevar.generate(_session(tiny, batch=1), schedule, backend="triton")
    torch.testing.assert_close(tri, ref, atol=2e-3, rtol=0)


def test_compile_one_fidelity_unit_fullgraph(tiny):
    # A real Infinity unit at the first fidelity step: project, its blocks at the positions of idx (KV cache,
    # RoPE gather, cross-attention), restore. torch.compile must trace it as one graph.
    s = _session(tiny, batch=1)
    first = len(s.scales) - 3
    for k in range(first):
        x = s.scale_input(k)
        for unit in s.units("chunk"):
            for block in unit:
                x = s.run_block(block, x, k)
        s.finish_scale(k, x)
    s.set_guidance("null")
    cache, x = x[1:], s.scale_input(first)
    blocks = s.units("chunk")[0]
    kv_before = s.kv.mark()

    def unit(x, cache):
        return fidelity.fidelity_unit(s, blocks, x, first, rank=5, seed=3, cache=cache, cache_hw=s.scales[first - 1])

    eager = unit(x, cache)
    s.kv.rewind(kv_before)
    torch._dynamo.reset()
    compiled = torch.compile(unit, fullgraph=True)
    torch.testing.assert_close(compiled(x, cache), eager, atol=1e-5, rtol=1e-5)


def test_compile_whole_scale_steps_fullgraph_equals_eager(tiny):
    # The computed part of a full step and of a reduced step (every unit, both StageVAR ops, the fused block ops
    # writing into the static KV cache) traces as one graph (fullgraph: no break) and computes what eager computes.
    from stagevar.fidelity import UnitOptions
    from stagevar.loop import UnitOutputs, scale_step

    schedule = presets("infinity")["paper"]
    eager_s, traced_s = _session(tiny, batch=2), _session(tiny, batch=2)
    units = [s.units(schedule.unit) for s in (eager_s, traced_s)]
    plan = schedule.plan(len(eager_s.scales), len(units[0]))
    first_reduced = next(k for k, st in enumerate(plan) if st.mode == "reduced")
    options = UnitOptions.from_schedule(schedule)
    outputs = [UnitOutputs([None] * len(units[0])) for _ in range(2)]
    step_fn = torch.compile(scale_step, fullgraph=True, backend="aot_eager")
    torch._dynamo.reset()
    with torch.inference_mode():
        for k in range(first_reduced + 1):
            step = plan[k]
            keep = plan[k + 1].mode == "reduced"
            xs = []
            for i, s in enumerate((eager_s, traced_s)):
                if s.guidance == "cfg" and step.guidance != "cfg":
                    outputs[i].keep_rows(stagevar.models.session.rows_for(s.guidance, step.guidance, s.batch))
                    s.set_guidance(step.guidance)
                run = step_fn if i == 1 and k in (first_reduced - 1, first_reduced) else scale_step
                xs.append(run(s, units[i], k, step, outputs[i], options, keep))
            # AOT decomposes composite ops (linear -> addmm ...): equal up to fp32 rounding, not bit for bit
            torch.testing.assert_close(xs[1], xs[0], atol=1e-5, rtol=1e-5)
            for s in (eager_s, traced_s):
                s.finish_scale(k, xs[0])  # the same codes for both sessions


@pytest.mark.parametrize("preset,depth,chunks", [("paper-table7", 8, 8)])
def test_depth_specific_presets_end_to_end(preset, depth, chunks):
    # paper-table7 is written for Infinity's 8 chunks: a thin model of that depth.
    from stagevar.models.infinity import build_infinity, get_config
    from stagevar.models.infinity.vae import BSQVAE

    cfg = get_config("tiny", depth=depth, block_chunks=chunks)
    torch.manual_seed(0)
    model, vae = build_infinity(cfg), BSQVAE(cfg.vae).eval()
    text = zoo.random_infinity_text(cfg.text_channels, 2, 0)
    session = new_session(model, vae, get_scale_schedule(1.0, "0.25M"), text, cfg_list=3.0, tau_list=0.5, seeds=[0, 1])
    rows = []
    run_block = session.run_block
    session.run_block = lambda b, x, si, p=None: (rows.append((si, x.shape[1])), run_block(b, x, si, p))[1]
    images = stagevar.generate(session, presets("infinity")[preset])
    assert images.shape == (2, 3, 128, 128) and torch.isfinite(images).all()
    steps = {si for si, _ in rows}
    assert max(steps) == 7  # the last two of the 10 steps are skipped
