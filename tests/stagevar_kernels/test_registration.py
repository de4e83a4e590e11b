"""The ops as registered torch ops: opcheck on several layouts, torch.compile, gradients refused."""

import pytest
import torch

import stagevar_kernels as sk
from stagevar_kernels.testing import devices, strided_like


def _x(layout, device):
    return strided_like(torch.randn(2, 23, 10, device=device), layout)


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("device", devices())
def test_opcheck_project_and_sample(layout, device):
    x = _x(layout, device)
    torch.library.opcheck(torch.ops.stagevar.project_and_sample.default, (x, 5, 42, None))
    # With inputs that require grad: registration is checked, but not the (deliberately failing) backward.
    grad_utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    x = x.detach().requires_grad_()
    torch.library.opcheck(torch.ops.stagevar.project_and_sample.default, (x, 5, 42, None), test_utils=grad_utils)


@pytest.mark.parametrize("shape", [(), (1,)])
@pytest.mark.parametrize("device", devices())
def test_opcheck_project_and_sample_device_seed(device, shape):
    x = _x("permuted", device)
    seed_t = torch.full(shape, 42, dtype=torch.int64, device=device)
    torch.library.opcheck(torch.ops.stagevar.project_and_sample.default, (x, 5, 0, None, seed_t))


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("device", devices())
def test_opcheck_restore_merge(layout, device):
    y = strided_like(torch.randn(2, 6, 10, device=device), layout)
    cache = strided_like(torch.randn(2, 12, 10, device=device), layout)
    idx = torch.tensor([[0, 3, 5, 9, 11, 19], [1, 2, 4, 8, 15, 16]], device=device)
    args = (y, idx, cache, [3, 4], [4, 5], "bilinear", None)
    torch.library.opcheck(torch.ops.stagevar.restore_merge.default, args)


def _unit(x, cache):
    xr, idx = sk.project_and_sample(x, 7, 3)
    y = torch.nn.functional.gelu(xr) * 2
    return sk.restore_merge(y, idx, cache, (4, 4), (5, 6), "area")


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph_cpu(dynamic):
    torch._dynamo.reset()
    x = torch.randn(2, 30, 12)
    cache = torch.randn(2, 16, 12)
    compiled = torch.compile(_unit, fullgraph=True, dynamic=dynamic)
    torch.testing.assert_close(compiled(x, cache), _unit(x, cache))


def test_torch_compile_fullgraph_device_seed():
    # One compiled graph serves every seed: the seed is data, not a constant baked into the graph.
    torch._dynamo.reset()
    x = torch.randn(2, 30, 12)
    cache = torch.randn(2, 16, 12)
    seed_t = torch.tensor(3)

    def unit(x, cache, seed_t):
        xr, idx = sk.project_and_sample(x, 7, seed_t)
        return sk.restore_merge(torch.nn.functional.gelu(xr), idx, cache, (4, 4), (5, 6), "area")

    compiled = torch.compile(unit, fullgraph=True, dynamic=False)
    for value in (3, 2**40 + 1):
        seed_t.fill_(value)
        want = sk.restore_merge(
            torch.nn.functional.gelu(sk.project_and_sample(x, 7, value)[0]),
            sk.project_and_sample(x, 7, value)[1],
            cache,
            (4, 4),
            (5, 6),
            "area",
        )
        torch.testing.assert_close(compiled(x, cache, seed_t), want)


def test_gradients_are_refused_with_a_clear_error():
    x = torch.randn(1, 8, 4, requires_grad=True)
    with pytest.raises(ValueError, match="^x: .*inference-only"):
        sk.project_and_sample(x, 2, 0)
    with torch.no_grad():
        sk.project_and_sample(x, 2, 0)
    xr, _ = torch.ops.stagevar.project_and_sample(x, 2, 0)
    with pytest.raises(RuntimeError, match="inference-only"):
        xr.sum().backward()


def test_available_backends_and_default():
    assert sk.available_backends("cpu")[0] == "reference"
    assert sk.default_backend("cpu") == "reference"
    if torch.cuda.is_available():
        assert sk.default_backend("cuda") in sk.available_backends("cuda")
