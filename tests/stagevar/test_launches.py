"""The launch budget of the engine: kernel-launching ops per block per scale step, counted on CPU, and no ``cat`` on
the KV path (the cache is preallocated and written in place)."""

import pytest
import torch

import stagevar
from stagevar.engine import LaunchCounter, count_launches
from stagevar.engine.launches import launches
from stagevar.models.infinity import BSQVAE, TextFeatures, build_infinity, get_scale_schedule, new_session
from stagevar.schedule import resolve

BUDGET = 25  # kernel-launching ops per block per scale step (eager unfused code: 66)


def _text():
    return TextFeatures(torch.randn(5, 128, generator=torch.Generator().manual_seed(0)), [2, 3])


def _session(model, vae):
    return new_session(model, vae, get_scale_schedule(1.0, "0.06M"), _text(), seeds=0, cfg_list=3.0)


@pytest.fixture(scope="module")
def tiny():
    model = build_infinity("tiny")
    return model, BSQVAE(model.config.vae).eval()


@pytest.mark.parametrize("preset", ["vanilla", "paper"])
def test_block_launches_within_budget_and_no_cat(tiny, preset):
    s = _session(*tiny)
    per_call, ops = [], []
    run_block = s.run_block

    def counted(block, x, si, positions=None):
        with LaunchCounter() as c:
            out = run_block(block, x, si, positions)
        per_call.append(c.total)
        ops.append(c.ops)
        return out

    s.run_block = counted
    with torch.inference_mode():
        stagevar.generate(s, resolve(preset, "infinity"), decode=False)
    assert len(per_call) > 0 and max(per_call) <= BUDGET, per_call
    assert not any(o["aten.cat"] for o in ops)
    assert all(o["stagevar.qk_norm_rope"] == 1 for o in ops)  # the K/V write is the fused op's


def test_counter_skips_views_and_counts_kernels():
    x = torch.randn(4, 6)
    _, c = count_launches(lambda: (x.view(6, 4).t().unsqueeze(0), x.detach(), x.to(x.dtype)))
    assert c.total == 0
    _, c = count_launches(lambda: torch.cat([x, x]) + 1)
    assert c.ops["aten.cat"] == 1 and c.total == 2
    assert launches(torch.ops.aten.mul.Tensor) and not launches(torch.ops.aten.view.default)


def test_benchmark_reports_launches_and_memory():
    from stagevar import benchmark

    result = benchmark.run("infinity-tiny", ["vanilla", "paper"], warmup=0, repeats=1, text_encoder=False)
    vanilla, paper = result["schedules"]["vanilla"], result["schedules"]["paper"]
    assert vanilla["launches"] > paper["launches"] > 0  # paper skips the last steps
    assert vanilla["launches_per_step"] == vanilla["launches"] / len(result["scales"])
    assert vanilla["max_rss_bytes"] > 0 and "launches/step" in benchmark.table(result)
    baseline = result["baseline"]  # vanilla in upstream's data flow: more launches per step
    assert baseline["launches_per_step"] > vanilla["launches_per_step"] and baseline["ms"]["total"] > 0


@pytest.mark.parametrize("preset", ["vanilla", "paper"])
def test_upstream_data_flow_gives_the_same_bits(tiny, preset):
    model, vae = tiny
    text = TextFeatures(torch.randn(5, 128, generator=torch.Generator().manual_seed(1)), [2, 3])
    images = []
    for engine in ("static", "upstream"):
        s = new_session(model, vae, get_scale_schedule(1.0, "0.06M"), text, seeds=[3, 4], cfg_list=3.0, engine=engine)
        images.append(stagevar.generate(s, resolve(preset, "infinity")))
    assert torch.equal(images[0], images[1])


def test_engine_argument_is_checked(tiny):
    with pytest.raises(ValueError, match="^engine"):
        new_session(*tiny, get_scale_schedule(1.0, "0.06M"), _text(), engine="graphs")
