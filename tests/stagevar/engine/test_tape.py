"""The CPU stand-in for a CUDA graph: a captured region replays faithfully on new input values, host
synchronisation inside it raises, and a registered op is recorded as one op."""

import pytest
import torch

import stagevar_kernels
from stagevar.engine.tape import CaptureError, TapeFactory, TapeGraph


def _toy(a, b, out):
    c = a * 2  # out of place
    half = c[:, :2]  # a view, written through below
    half.add_(b[:, :2])
    t = c.t().reshape(-1)  # declared a view, copies (non-contiguous input)
    d = t.to(torch.float64)  # declared a view, copies (dtype change)
    torch.add(c, 1.0, out=out)  # an out= op writes an argument
    return d.sum() + out.mean(), c


def test_replay_reexecutes_inplace_view_and_copying_ops_on_new_values():
    a, b, out = torch.randn(3, 4), torch.randn(3, 4), torch.empty(3, 4)
    g = TapeGraph()
    with torch.inference_mode():
        s, c = g.capture(lambda: _toy(a, b, out))
        for _ in range(2):
            a.copy_(torch.randn(3, 4))
            b.copy_(torch.randn(3, 4))
            g.replay()
            want_s, want_c = _toy(a.clone(), b.clone(), torch.empty(3, 4))
            assert torch.equal(c, want_c) and torch.equal(out, want_c + 1.0) and torch.equal(s, want_s)


def test_replay_does_not_rerun_python():
    calls = []
    x = torch.ones(2)

    def region():
        calls.append(1)
        return x * 3

    g = TapeGraph()
    y = g.capture(region)
    x.fill_(2.0)
    g.replay()
    assert calls == [1] and torch.equal(y, torch.full((2,), 6.0))


@pytest.mark.parametrize(
    "region",
    [
        lambda t: t.sum().item(),
        lambda t: int(t[0]),
        lambda t: t.nonzero(),
        lambda t: t[t > 0],
        lambda t: torch.equal(t, t),
        lambda t: bool(t[0] > 0) or t,
        lambda t: t + torch.tensor([1.0, 2.0, 3.0]),
        lambda t: t.masked_select(t > 0),
    ],
    ids=["item", "int", "nonzero", "bool-mask", "equal", "if-tensor", "torch.tensor", "masked_select"],
)
def test_host_synchronisation_in_a_region_raises(region):
    t = torch.randn(3)
    with pytest.raises(CaptureError, match="captured region"):
        TapeGraph().capture(lambda: region(t))


def test_a_registered_op_is_one_op_and_reads_its_seed_tensor_at_replay():
    x = torch.randn(2, 24, 8)
    seed = torch.zeros((), dtype=torch.int64)
    g = TapeGraph()
    with torch.inference_mode():
        xr, idx = g.capture(lambda: stagevar_kernels.project_and_sample(x, 5, seed))
        assert [str(op[0]) for op in g.ops] == ["stagevar.project_and_sample.default"]
        for s in (7, 2**62 + 5):
            seed.fill_(s)
            g.replay()
            want_xr, want_idx = stagevar_kernels.project_and_sample(x, 5, s)
            assert torch.equal(xr, want_xr) and torch.equal(idx, want_idx)


def test_capture_and_replay_order_is_checked_and_the_factory_counts_graphs():
    f = TapeFactory()
    g = f.graph(f.pool())
    with pytest.raises(RuntimeError, match="replay before capture"):
        g.replay()
    g.capture(lambda: torch.ones(1) + 1)
    with pytest.raises(RuntimeError, match="already captured"):
        g.capture(lambda: torch.ones(1))
    assert f.graphs == [g]
