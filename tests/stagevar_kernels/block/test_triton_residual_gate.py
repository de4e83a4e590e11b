"""The Triton ``residual_gate`` kernel against the reference: equal bits (see ``block.testing.TOLERANCES``).

CPU runs it under ``TRITON_INTERPRET=1`` (``tests/conftest.py``), CUDA compiled."""

import pytest
import torch

pytest.importorskip("triton")

from stagevar_kernels.block import reference, residual_gate  # noqa: E402
from stagevar_kernels.block.testing import tolerance  # noqa: E402
from stagevar_kernels.testing import strided_like  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(2, 5, 37), (1, 1, 1), (3, 70, 130)]


@pytest.fixture
def device(triton_device):
    return triton_device


def _case(shape, x_dtype, y_dtype, device, layout="contiguous", broadcast_y=False):
    R, L, C = shape
    x = strided_like((torch.randn(shape) * 4).to(x_dtype).to(device), layout)
    y = strided_like((torch.randn(1 if broadcast_y else R, L, C) * 4).to(y_dtype).to(device), layout)
    gss = torch.randn(R, 1, 6, C, device=device)
    return x, y, gss[:, :, 0], gss[:, :, 1]


def _check(x, y, gate, **kwargs):
    want = reference.residual_gate(x, y, gate, kwargs.get("scale", 1.0), kwargs.get("round_to_y", False))
    got = residual_gate(x, y, gate, **kwargs, backend="triton")
    assert got.dtype == want.dtype and got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, **tolerance("residual_gate", got.dtype))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("y_dtype", DTYPES)
def test_matches_reference(device, shape, x_dtype, y_dtype):
    x, y, g1, g2 = _case(shape, x_dtype, y_dtype, device)
    _check(x, y, g1, round_to_y=True)
    _check(x, y, g2)
    _check(x, y, None)
    _check(x, y, None, scale=0.7)


@pytest.mark.parametrize("layout", ["permuted", "sliced"])
@pytest.mark.parametrize("broadcast_y", [False, True])
def test_strided_and_broadcast(device, layout, broadcast_y):
    x, y, g1, _ = _case((3, 9, 40), torch.float32, torch.bfloat16, device, layout, broadcast_y)
    _check(x, y, g1, round_to_y=True)
    _check(x, y, None)
    _check(x, y, g1[:1])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy under the interpreter
def test_non_finite_and_ties(device):
    # Products whose bf16 rounding is a tie, overflow to inf, and NaN: rounding must be nearest-even on every path.
    y = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, 3.0e38, float("nan"), -0.0, 1e-40]).reshape(1, 1, 6)
    x = torch.zeros(1, 1, 6)
    g = torch.tensor([1.0, 1.0, 2.0, 1.0, 1.0, 1.0]).reshape(1, 1, 6)
    for y_dtype in (torch.float32, torch.bfloat16):
        yd = y.to(y_dtype).to(device)
        want = reference.residual_gate(x.to(device), yd, g.to(device), 1.0, True)
        got = residual_gate(x.to(device), yd, g.to(device), round_to_y=True, backend="triton")
        torch.testing.assert_close(got, want, atol=0, rtol=0, equal_nan=True)
    xb = (torch.ones(1, 1, 6) + torch.tensor([2**-8, 3 * 2**-8, 0, 0, 0, 0])).bfloat16().to(device)
    want = reference.residual_gate(xb, yd, g.to(device), 1.0, True)  # bf16 + bf16: a rounded sum
    got = residual_gate(xb, yd, g.to(device), round_to_y=True, backend="triton")
    torch.testing.assert_close(got, want, atol=0, rtol=0, equal_nan=True)
