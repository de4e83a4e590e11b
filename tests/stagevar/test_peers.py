"""The FastVAR peer on a tiny Infinity: the released method's structure, on any schedule."""

import json

import pytest
import torch

from stagevar import cli, zoo
from stagevar.models.common import run_plain
from stagevar.models.infinity import get_scale_schedule, new_session
from stagevar.peers import fastvar


@pytest.fixture(scope="module")
def tiny():
    return zoo.build("infinity-tiny")


def _session(tiny, seed=0, **kw):
    text = zoo.random_infinity_text(128, 2, seed)
    return new_session(
        tiny.model,
        tiny.vae,
        get_scale_schedule(1.0, "0.25M"),
        text,
        cfg_list=3.0,
        tau_list=0.5,
        seeds=[seed, seed + 1],
        **kw,
    )


def test_keeping_every_token_is_the_plain_loop_bit_for_bit(tiny):
    # drop=0 still runs the pruned path (selection, gather, restore) in block 3 at steps 6 and 7.
    assert torch.equal(fastvar.generate(_session(tiny), drop=(0.0, 0.0), skip=0), run_plain(_session(tiny)))


def test_released_structure(tiny, monkeypatch):
    calls = []
    restore = fastvar.stagevar_kernels.restore_merge

    def spy(y, idx, cache, src, dst, mode, **kw):
        calls.append((y.shape, idx.shape, cache.shape, src, dst, mode))
        return restore(y, idx, cache, src, dst, mode, **kw)

    monkeypatch.setattr(fastvar.stagevar_kernels, "restore_merge", spy)
    s = _session(tiny, record=True)
    pruned_block = s.units("block")[3][0]  # blocks 3..27 are pruned; the tiny model has 4
    lengths = []
    run = fastvar._block

    def watch(session, block, x, si, updates):
        out = run(session, block, x, si, updates)
        if block is pruned_block:
            lengths.append(session.kv.filled[session._block_index[id(block)]])
        return out

    monkeypatch.setattr(fastvar, "_block", watch)
    images = fastvar.generate(s)
    assert images.shape == (2, 3, 128, 128) and torch.isfinite(images).all()
    assert len(s.records) == 8  # the last two of 10 steps are skipped
    grown = [b - a for a, b in zip([0] + lengths, lengths)]
    tokens = [h * w for h, w in s.scales[:8]]
    keep6, keep7 = tokens[6] - int(tokens[6] * 0.4), tokens[7] - int(tokens[7] * 0.5)
    assert grown[:6] == tokens[:6] and grown[6:] == [keep6, keep7]  # only kept tokens enter the KV cache
    # Three restorations (sa, ca, ffn) per pruned block and step, from the step before the first pruned one.
    assert [(c[3], c[4], c[5]) for c in calls] == [(s.scales[5], s.scales[6], "area")] * 3 + [
        (s.scales[5], s.scales[7], "area")
    ] * 3
    assert [c[0][1] for c in calls] == [keep6] * 3 + [keep7] * 3
    assert all(c[2][1] == s.scales[5][0] * s.scales[5][1] for c in calls)


def test_refuses_what_it_is_not():
    star = zoo.build("star-tiny")
    session = star.new_session(batch=1)
    with pytest.raises(ValueError, match="^session: FastVAR as released is an Infinity method"):
        fastvar.generate(session)


def test_refuses_hidden_state_cfg_and_bad_sizes(tiny):
    with pytest.raises(ValueError, match="^session: FastVAR keeps CFG on the logits"):
        fastvar.generate(_session(tiny, cfg_insertion_layer=-1))
    with pytest.raises(ValueError, match="^drop/skip"):
        fastvar.generate(_session(tiny), drop=(0.4,) * 9, skip=2)


def test_peers_side_by_side_in_the_harness(tmp_path):
    out = tmp_path / "b.json"
    argv = [
        "bench",
        "--model",
        "infinity-tiny",
        "--device",
        "cpu",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--schedules",
        "vanilla,paper,fastvar,skipvar-skip1,skipvar-cond2",
        "--json",
        str(out),
    ]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    assert list(result["schedules"]) == ["vanilla", "paper", "fastvar", "skipvar-skip1", "skipvar-cond2"]
    ms = {name: entry["ms"] for name, entry in result["schedules"].items()}
    assert "scale4" in ms["fastvar"] and "scale5" not in ms["fastvar"] and "decode" in ms["fastvar"]  # 7 steps
    assert "scale6" not in ms["skipvar-skip1"] and "scale6" in ms["skipvar-cond2"]


def test_skipvar_modes_are_the_released_levers(tiny):
    from stagevar.peers import skipvar

    plan = skipvar.mode("skipvar-skip2").plan(13, 8)
    assert [s.mode for s in plan[10:]] == ["full", "skip", "skip"] and plan[10].guidance == "cfg"
    plan = skipvar.mode("skipvar-cond3").plan(13, 8)
    assert [(s.mode, s.guidance) for s in plan[10:]] == [("full", "cond")] * 3
    assert skipvar.mode("skipvar-cond1", "block").unit == "block"
    with pytest.raises(ValueError, match="^name: "):
        skipvar.mode("skipvar-adaptive")


# ----------------------------------------------------------------------------------------------- the registry
def test_registry_names_and_families():
    from stagevar import peers
    from stagevar.peers import skipvar

    assert list(peers.PEERS) == ["fastvar", *skipvar.MODES]
    assert peers.PEERS["fastvar"].families == ("infinity",)
    assert all(peers.PEERS[name].families == ("infinity", "star") for name in skipvar.MODES)
    with pytest.raises(ValueError, match=r"^name: expected a peer among \['fastvar', 'skipvar-skip1'.*got 'fastvar2'"):
        peers.runner("fastvar2", "infinity")
    with pytest.raises(ValueError, match="^schedules: the FastVAR peer is a method for Infinity only, not STAR"):
        peers.runner("fastvar", "star")
    with pytest.raises(ValueError, match="^family: "):
        peers.runner("fastvar", "var")


def test_harness_refuses_fastvar_on_star_before_any_work(capsys):
    assert cli.main(["bench", "--model", "star-tiny", "--device", "cpu", "--schedules", "vanilla,fastvar"]) == 2
    assert "--schedules fastvar: schedules: the FastVAR peer is a method for Infinity only" in capsys.readouterr().err


def test_runners_take_the_registry_signature(tiny, monkeypatch):
    # runner(session, *, backend, timer, cuda_graphs): every switch reaches the peer's generate
    from stagevar import peers

    seen = []
    real = fastvar.generate

    def recording(session, **kwargs):
        seen.append(sorted(kwargs))
        return real(session, **kwargs)

    monkeypatch.setattr(fastvar, "generate", recording)
    run = peers.runner("fastvar", "infinity")
    images = run(_session(tiny), backend="reference", timer=None, cuda_graphs=False)
    assert images.shape == (2, 3, 128, 128) and seen == [["backend", "cuda_graphs", "timer"]]
    skip = peers.runner("skipvar-skip1", "star")
    star = zoo.build("star-tiny")
    assert skip(star.new_session(batch=1), backend=None, timer=None, cuda_graphs=False).shape[0] == 1
