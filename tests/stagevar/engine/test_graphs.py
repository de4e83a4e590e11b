"""The graphed generation engine, proven on a CPU with the tape stand-in (``stagevar.engine.tape``): graphed equals
eager bit for bit over consecutive generations with new prompts and seeds, the first generation of a key captures
and later ones replay, a new key captures anew, and what cannot be graphed is refused with a ValueError."""

import gc
import weakref

import pytest
import torch

import stagevar
from stagevar import presets, zoo
from stagevar.engine import graphs
from stagevar.engine.tape import TapeFactory
from stagevar.loop import computed_steps
from stagevar.models.infinity import get_scale_schedule
from stagevar.models.infinity import new_session as infinity_session
from stagevar.models.star import new_session as star_session
from stagevar.timing import CPUTimer


def _infinity(tiny, batch, seed, h_div_w=1.0, **kw):
    text = zoo.random_infinity_text(tiny.model.text_norm.weight.shape[0], batch, seed)
    seeds = [seed + i for i in range(batch)]
    schedule = get_scale_schedule(h_div_w, "0.06M")
    return infinity_session(tiny.model, tiny.vae, schedule, text, cfg_list=3.0, tau_list=0.5, seeds=seeds, **kw)


def _star(tiny, batch, seed):
    width = tiny.model.blocks[0].cross_attn.mat_kv.weight.shape[1]
    text = zoo.random_star_text(batch, seed, width)
    return star_session(tiny.model, tiny.vae, text, batch=batch, seeds=[seed + i for i in range(batch)], cfg=4.5)


@pytest.fixture(autouse=True)
def _fresh_cache():
    graphs.clear()
    yield
    graphs.clear()


CASES = [
    ("infinity", "vanilla", 2),
    ("infinity", "paper", 1),
    ("infinity", "paper", 2),
    ("infinity", "skip-only", 1),
    ("star", "vanilla", 1),
    ("star", "paper", 2),
    ("star", "skip-only", 2),
]


@pytest.mark.parametrize("family,preset,batch", CASES)
def test_graphed_equals_eager_over_three_generations(family, preset, batch, request):
    tiny = request.getfixturevalue(f"{family}_tiny")
    make = _infinity if family == "infinity" else _star
    schedule = presets(family)[preset]
    factory = TapeFactory()
    computed = None
    for gen, seed in enumerate((0, 11, 23)):  # new prompts (text features from the seed) and new op seeds
        timer = CPUTimer()
        with graphs.use_factory(factory):
            graphed_session = make(tiny, batch, seed)
            graphed = stagevar.generate(graphed_session, schedule, seed=seed + 5, timer=timer, cuda_graphs=True)
        eager = stagevar.generate(make(tiny, batch, seed), schedule, seed=seed + 5)
        assert torch.equal(graphed, eager), f"generation {gen}"
        labels = timer.finish()
        units = len(graphed_session.units(schedule.unit))
        computed = computed_steps(schedule.plan(len(graphed_session.scales), units))
        assert all(f"scale{k}" in labels for k in range(computed))
        assert ("capture" in labels) == (gen == 0)
        assert len(factory.graphs) == computed  # one graph per computed step, captured at the first generation only
    assert len(graphs.captured_keys(tiny.model)) == 1


def test_a_new_key_captures_anew_and_going_back_reuses_the_first(infinity_tiny):
    factory = TapeFactory()
    paper, vanilla = presets("infinity")["paper"], presets("infinity")["vanilla"]
    runs = [
        (1, 1.0, paper),  # captured
        (2, 1.0, paper),  # new batch
        (1, 0.5, paper),  # new scale template
        (1, 1.0, vanilla),  # new schedule
        (1, 1.0, paper),  # back to the first key: no capture
    ]
    counts = []
    with graphs.use_factory(factory):
        for batch, h_div_w, schedule in runs:
            stagevar.generate(_infinity(infinity_tiny, batch, 3, h_div_w), schedule, decode=False, cuda_graphs=True)
            counts.append(len(factory.graphs))
    paper_steps, vanilla_steps = 5, 7  # of the 7 scales of the 0.06M template, paper skips the last two
    captured_all = 3 * paper_steps + vanilla_steps
    assert counts == [paper_steps, 2 * paper_steps, 3 * paper_steps, captured_all, captured_all]
    assert len(graphs.captured_keys(infinity_tiny.model)) == 4
    # a new projection seed is not a new key
    with graphs.use_factory(factory):
        stagevar.generate(_infinity(infinity_tiny, 1, 4), paper, seed=99, decode=False, cuda_graphs=True)
    assert len(factory.graphs) == counts[-1]


def test_a_new_text_length_captures_anew(infinity_tiny):
    from stagevar.models.infinity.text import TextFeatures

    factory = TapeFactory()
    channels = infinity_tiny.model.text_norm.weight.shape[0]
    schedule = presets("infinity")["paper"]
    with graphs.use_factory(factory):
        for tokens in (32, 20, 32):
            text = TextFeatures(torch.randn(tokens, channels) * 0.2, [tokens])
            s = infinity_session(
                infinity_tiny.model, infinity_tiny.vae, get_scale_schedule(1.0, "0.06M"), text, cfg_list=3.0, seeds=0
            )
            stagevar.generate(s, schedule, decode=False, cuda_graphs=True)
    assert len(factory.graphs) == 10 and len(graphs.captured_keys(infinity_tiny.model)) == 2


def test_clear_drops_the_graphs_and_they_die_with_the_model():
    tiny = zoo.build("infinity-tiny")
    with graphs.use_factory(TapeFactory()):
        stagevar.generate(_infinity(tiny, 1, 0), presets("infinity")["skip-only"], decode=False, cuda_graphs=True)
    assert graphs.captured_keys(tiny.model)
    graphs.clear(tiny.model)
    assert graphs.captured_keys(tiny.model) == []
    with graphs.use_factory(TapeFactory()):
        stagevar.generate(_infinity(tiny, 1, 0), presets("infinity")["skip-only"], decode=False, cuda_graphs=True)
    model = weakref.ref(tiny.model)
    del tiny
    gc.collect()
    assert model() is None  # the workspace holds no reference to its model


def test_cuda_graphs_are_refused_with_a_value_error_naming_the_argument(infinity_tiny):
    paper = presets("infinity")["paper"]
    with pytest.raises(ValueError, match="^cuda_graphs: CUDA graphs need a CUDA device; this session runs on cpu"):
        stagevar.generate(_infinity(infinity_tiny, 1, 0), paper, cuda_graphs=True)
    with graphs.use_factory(TapeFactory()):
        with pytest.raises(ValueError, match="^cuda_graphs: .*observer"):
            stagevar.generate(_infinity(infinity_tiny, 1, 0), paper, observer=lambda k, u, x: None, cuda_graphs=True)
        with pytest.raises(ValueError, match="^cuda_graphs: CFG on a hidden state"):
            s = _infinity(infinity_tiny, 1, 0, cfg_insertion_layer=-1)
            stagevar.generate(s, paper, cuda_graphs=True)
        with pytest.raises(ValueError, match="^cuda_graphs: .*engine='upstream'"):
            stagevar.generate(_infinity(infinity_tiny, 1, 0, engine="upstream"), paper, cuda_graphs=True)
        with pytest.raises(ValueError, match="^cuda_graphs: called inside an autocast context"):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                stagevar.generate(_infinity(infinity_tiny, 1, 0), paper, cuda_graphs=True)
    assert graphs.captured_keys(infinity_tiny.model) == []


@pytest.mark.parametrize("family", ["infinity", "star"])
def test_the_kv_cache_holds_only_the_computed_scales(family, request):
    tiny = request.getfixturevalue(f"{family}_tiny")
    make = _infinity if family == "infinity" else _star
    allocated = {}
    for preset in ("vanilla", "paper", "skip-only"):
        s = make(tiny, 1, 0)
        schedule = presets(family)[preset]
        stagevar.generate(s, schedule, decode=False)
        computed = computed_steps(schedule.plan(len(s.scales), len(s.units(schedule.unit))))
        assert s.kv.k.shape[3] == sum(h * w for h, w in s.scales[:computed])
        allocated[preset] = s.kv.k.numel() + s.kv.v.numel()
    assert allocated["paper"] < allocated["vanilla"] and allocated["skip-only"] < allocated["vanilla"]


def test_fastvar_graphed_equals_eager_over_three_generations(infinity_tiny):
    from stagevar.peers import fastvar

    layers = range(1, 4)  # blocks 1-3 of the four pruned, block 0 not
    factory = TapeFactory()
    for gen, seed in enumerate((0, 11, 23)):
        timer = CPUTimer()
        with graphs.use_factory(factory):
            graphed = fastvar.generate(_infinity(infinity_tiny, 2, seed), layers=layers, timer=timer, cuda_graphs=True)
        eager = fastvar.generate(_infinity(infinity_tiny, 2, seed), layers=layers)
        assert torch.equal(graphed, eager), f"generation {gen}"
        assert ("capture" in timer.finish()) == (gen == 0)
        assert len(factory.graphs) == 5  # 7 scales, the last two skipped
    with pytest.raises(ValueError, match="^cuda_graphs: CUDA graphs need a CUDA device"):
        fastvar.generate(_infinity(infinity_tiny, 1, 0), cuda_graphs=True)
