"""accelerate()/restore() on our model classes: the official entry point runs the schedule, restore undoes it."""

import pytest
import torch
from torch import nn

import stagevar
from stagevar import presets, zoo
from stagevar.models.infinity import get_scale_schedule, new_session
from stagevar.patching import family_of, schedule_of


@pytest.fixture(scope="module")
def tiny():
    return zoo.build("infinity-tiny")


def _official_args(tiny, seed=7):
    text = zoo.random_infinity_text(tiny.model.text_norm.weight.shape[0], 1, 0)
    scales = [(1, h, w) for h, w in get_scale_schedule(1.0, "0.06M")]
    return text, dict(
        vae=tiny.vae,
        scale_schedule=scales,
        label_B_or_BLT=text.as_upstream(),
        B=1,
        g_seed=seed,
        cfg_list=[3.0] * len(scales),
        tau_list=[0.5] * len(scales),
        top_k=900,
        top_p=0.97,
        cfg_insertion_layer=0,
        vae_type=32,
        ret_img=True,
    )


def test_family_detection(tiny):
    assert family_of(tiny.model) == "infinity"
    assert family_of(zoo.build("star-tiny").model) == "star"
    with pytest.raises(ValueError, match="^model: Linear is neither"):
        family_of(nn.Linear(2, 2))


def test_accelerated_entry_point_runs_the_schedule(tiny):
    text, kwargs = _official_args(tiny)
    schedule = presets("infinity")["paper"]
    with stagevar.accelerated(tiny.model, "paper"):
        assert schedule_of(tiny.model) == schedule
        _, _, img = tiny.model.autoregressive_infer_cfg(**kwargs)
    session = new_session(tiny.model, tiny.vae, kwargs["scale_schedule"], text, cfg_list=3.0, tau_list=0.5, seeds=7)
    want = stagevar.generate(session, schedule, seed=7)
    assert img.dtype == torch.uint8 and img.shape == (1, 64, 64, 3)
    # Upstream returns BGR uint8 by truncation.
    assert torch.equal(img, want.permute(0, 2, 3, 1).mul(255).to(torch.uint8).flip(dims=(3,)))
    assert schedule_of(tiny.model) is None


def test_restore_leaves_the_model_exactly_as_before(tiny):
    _, kwargs = _official_args(tiny, seed=3)
    before_dict = dict(tiny.model.__dict__)
    before_state = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    _, _, plain = tiny.model.autoregressive_infer_cfg(**kwargs)
    stagevar.accelerate(tiny.model, "paper")
    _, _, fast = tiny.model.autoregressive_infer_cfg(**kwargs)
    stagevar.accelerate(tiny.model, "skip-only")  # a second call replaces the schedule
    assert schedule_of(tiny.model).name == "skip-only"
    stagevar.restore(tiny.model)
    _, _, again = tiny.model.autoregressive_infer_cfg(**kwargs)
    assert torch.equal(plain, again) and not torch.equal(plain, fast)
    assert tiny.model.__dict__.keys() == before_dict.keys()
    assert all(torch.equal(v, before_state[k]) for k, v in tiny.model.state_dict().items())
    with pytest.raises(ValueError, match="^model: .* not accelerated"):
        stagevar.restore(tiny.model)


def test_vanilla_schedule_through_accelerate_is_bit_identical(tiny):
    _, kwargs = _official_args(tiny, seed=11)
    _, _, plain = tiny.model.autoregressive_infer_cfg(**kwargs)
    with stagevar.accelerated(tiny.model, "vanilla"):
        _, _, same = tiny.model.autoregressive_infer_cfg(**kwargs)
    assert torch.equal(plain, same)


def test_accelerate_star():
    built = zoo.build("star-tiny")
    hidden, mask, pool = zoo.random_star_text(1, 0, built.model.blocks[0].cross_attn.mat_kv.weight.shape[1])
    kwargs = dict(
        B=1,
        encoder_hidden_states=hidden,
        encoder_attention_mask=mask,
        encoder_pool_feat=pool,
        g_seed=5,
        cfg=4.5,
        top_k=600,
        top_p=0.8,
    )
    plain = built.model.autoregressive_infer_cfg(**kwargs)
    with stagevar.accelerated(built.model, "paper"):
        fast = built.model.autoregressive_infer_cfg(**kwargs)
        slow = None
    with stagevar.accelerated(built.model, "vanilla"):
        slow = built.model.autoregressive_infer_cfg(**kwargs)
    assert fast.shape == plain.shape and torch.equal(slow, plain) and not torch.equal(fast, plain)
    assert torch.equal(built.model.autoregressive_infer_cfg(**kwargs), plain)


def test_hidden_state_cfg_of_gen_one_img(tiny):
    # gen_one_img's default mixes the guidance branches on a block's output (cfg_insertion_layer=-k).
    _, kwargs = _official_args(tiny, seed=2)
    kwargs["cfg_insertion_layer"] = [-1]
    _, _, plain = tiny.model.autoregressive_infer_cfg(**kwargs)
    _, _, on_logits = tiny.model.autoregressive_infer_cfg(**(kwargs | {"cfg_insertion_layer": [0]}))
    assert not torch.equal(plain, on_logits)
    with stagevar.accelerated(tiny.model, "paper"):  # null guidance in the fidelity steps: nothing to mix there
        _, _, fast = tiny.model.autoregressive_infer_cfg(**kwargs)
    assert fast.shape == plain.shape
    reduced_with_cfg = presets("infinity")["paper"].with_(guidance="cfg")
    with stagevar.accelerated(tiny.model, reduced_with_cfg), pytest.raises(ValueError, match="^cfg_insertion_layer"):
        tiny.model.autoregressive_infer_cfg(**kwargs)


def _perturbed_copy(model):
    import copy

    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.head.weight.mul_(-1.0)  # different weights: the copy must run its own
    return clone


def test_deepcopy_of_an_accelerated_model_runs_its_own_weights(tiny):
    _, kwargs = _official_args(tiny, seed=5)
    with stagevar.accelerated(tiny.model, "paper"):
        clone = _perturbed_copy(tiny.model)
        _, _, original = tiny.model.autoregressive_infer_cfg(**kwargs)
    assert schedule_of(clone).name == "paper"
    _, _, copied = clone.autoregressive_infer_cfg(**kwargs)
    stagevar.restore(clone)
    with stagevar.accelerated(clone, "paper"):
        _, _, fresh = clone.autoregressive_infer_cfg(**kwargs)
    assert torch.equal(copied, fresh) and not torch.equal(copied, original)
    assert "autoregressive_infer_cfg" not in clone.__dict__ and schedule_of(tiny.model) is None


def test_pickled_accelerated_model_stays_accelerated(tiny, tmp_path):
    _, kwargs = _official_args(tiny, seed=9)
    with stagevar.accelerated(tiny.model, "paper"):
        _, _, want = tiny.model.autoregressive_infer_cfg(**kwargs)
        torch.save(tiny.model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)  # a trusted file we just wrote
    assert schedule_of(loaded).name == "paper"
    _, _, got = loaded.autoregressive_infer_cfg(**kwargs)
    assert torch.equal(got, want)
    stagevar.restore(loaded)
    assert "autoregressive_infer_cfg" not in loaded.__dict__


def test_entry_point_alone_cannot_be_copied(tiny):
    import copy

    with stagevar.accelerated(tiny.model, "paper"), pytest.raises(TypeError, match="with its model"):
        copy.deepcopy(tiny.model.autoregressive_infer_cfg)


def test_accelerate_and_restore_from_threads():
    # Two threads toggling the same models: every model must end either plainly restored or accelerated with a
    # schedule that restore() accepts (without the lock, a race left models accelerated that restore refused).
    import threading

    models = [zoo.build("infinity-tiny").model for _ in range(2)]
    barrier = threading.Barrier(4)
    errors = []

    def worker(i):
        barrier.wait()
        for n in range(300):
            model = models[(i + n) % 2]
            try:
                stagevar.accelerate(model, "paper" if n % 2 else "skip-only")
                stagevar.restore(model)
            except ValueError as err:  # another thread restored it between our two calls
                assert "not accelerated" in str(err)
            except Exception as err:  # noqa: BLE001
                errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for model in models:
        if schedule_of(model) is not None:
            stagevar.restore(model)
        assert schedule_of(model) is None and "autoregressive_infer_cfg" not in model.__dict__


def test_accelerated_entry_keeps_the_official_signature(tiny):
    import inspect

    plain = inspect.signature(tiny.model.autoregressive_infer_cfg)
    with stagevar.accelerated(tiny.model, "paper"):
        assert inspect.signature(tiny.model.autoregressive_infer_cfg) == plain
        assert tiny.model.autoregressive_infer_cfg.__name__ == "autoregressive_infer_cfg"


# ----------------------------------------------------------------------------------------------- cuda_graphs
@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_cuda_graphs_must_be_a_bool(tiny, bad):
    with pytest.raises(ValueError, match="^cuda_graphs: expected True or False"):
        stagevar.accelerate(tiny.model, "paper", cuda_graphs=bad)
    assert schedule_of(tiny.model) is None  # nothing was patched


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a model off CUDA")
def test_cuda_graphs_on_a_cpu_model_is_refused_at_accelerate(tiny):
    with pytest.raises(ValueError, match="^cuda_graphs: CUDA graphs need a CUDA device; this model is on cpu"):
        stagevar.accelerate(tiny.model, "paper", cuda_graphs=True)
    with pytest.raises(ValueError, match="^cuda_graphs: "), stagevar.accelerated(tiny.model, cuda_graphs=True):
        pass
    assert schedule_of(tiny.model) is None


@pytest.fixture
def loop_calls(monkeypatch):
    """The keyword arguments of every call the accelerated entry makes to the loop (which then runs eagerly), with
    the model's device reported as CUDA so that ``cuda_graphs=True`` is accepted on this machine."""
    from stagevar import patching

    calls = []
    real = patching.generate

    def recording_generate(session, schedule, **kwargs):
        calls.append(dict(kwargs))
        kwargs.pop("cuda_graphs", None)
        return real(session, schedule, **kwargs)

    monkeypatch.setattr(patching, "generate", recording_generate)
    monkeypatch.setattr(patching, "_model_device", lambda model: torch.device("cuda"))
    return calls


def test_cuda_graphs_reaches_the_loop_through_copies_and_pickles(tiny, loop_calls, tmp_path):
    import copy

    _, kwargs = _official_args(tiny, seed=4)
    with stagevar.accelerated(tiny.model, "paper", cuda_graphs=True):
        tiny.model.autoregressive_infer_cfg(**kwargs)
        clone = copy.deepcopy(tiny.model)
        torch.save(tiny.model, tmp_path / "model.pt")
    clone.autoregressive_infer_cfg(**kwargs)
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)  # a trusted file we just wrote
    loaded.autoregressive_infer_cfg(**kwargs)
    assert [c.get("cuda_graphs") for c in loop_calls] == [True, True, True]
    stagevar.restore(clone)
    stagevar.restore(loaded)
    with stagevar.accelerated(tiny.model, "paper"):  # the default: an eager loop call, as before the switch
        tiny.model.autoregressive_infer_cfg(**kwargs)
    assert "cuda_graphs" not in loop_calls[-1]


def test_models_pickled_before_the_switch_load_eager(tiny):
    from stagevar.patching import _rebuild_entry

    model = zoo.build("infinity-tiny").model
    entry = _rebuild_entry(model, "infinity", presets("infinity")["paper"].to_dict(), None, None)
    assert entry.cuda_graphs is False and schedule_of(model).name == "paper"
