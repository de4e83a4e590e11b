"""``residual_gate``: the reference op equals the residual adds of the Infinity and STAR blocks bit for bit;
registration; argument checks. The inline expressions are those of ``blocks.block_forward`` of each model."""

import pytest
import torch

from stagevar_kernels.block import residual_gate
from stagevar_kernels.testing import strided_like

DTYPES = [torch.float32, torch.bfloat16]
SHAPES = [(2, 5, 37), (1, 1, 1), (3, 7, 130)]


def _gates(rows, channels):
    gss = torch.randn(rows, 1, 6, channels)
    g1, g2, *_ = gss.unbind(2)  # strided views, as the block slices them
    return g1, g2


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("y_dtype", DTYPES)
def test_infinity_bit_exact(shape, x_dtype, y_dtype):
    x = torch.randn(shape).to(x_dtype)
    y = torch.randn(shape).to(y_dtype)
    g1, g2 = _gates(shape[0], shape[2])
    # self-attention: x + sa_out.mul_(g1) (in place: the product keeps sa_out's dtype)
    want = x + y.clone().mul_(g1)
    got = residual_gate(x, y, g1, round_to_y=True)
    assert got.dtype == want.dtype and torch.equal(got, want)
    # cross-attention: x + ca_out.float().mul_(ca_gamma)
    for ca_gamma in (1.0, 0.7):
        want = x + y.clone().float().mul_(ca_gamma)
        got = residual_gate(x, y, scale=ca_gamma)
        assert got.dtype == want.dtype and torch.equal(got, want)
    # FFN: x + ffn_out.mul(g2)
    want = x + y.mul(g2)
    got = residual_gate(x, y, g2)
    assert got.dtype == want.dtype and torch.equal(got, want)


@pytest.mark.parametrize("y_dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
def test_star_bit_exact(y_dtype, layout):
    x = strided_like(torch.randn(3, 6, 20), layout)
    y = strided_like(torch.randn(3, 6, 20).to(y_dtype), layout)
    got = residual_gate(x, y)
    assert got.is_contiguous() and torch.equal(got, x + y)
    # cross-attention of row 0 broadcast onto every row: x + out[0]
    y0 = torch.randn(1, 6, 20).to(y_dtype)
    assert torch.equal(residual_gate(x, y0), x + y0[0])


def test_broadcast_gate_row():
    x, y, g = torch.randn(3, 4, 8), torch.randn(3, 4, 8), torch.randn(1, 1, 8)
    assert torch.equal(residual_gate(x, y, g), x + y * g)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x": torch.randn(2, 3)}, "^x:"),
        ({"y": torch.randn(2, 4, 4)}, "^y:"),
        ({"y": torch.randn(2, 3, 4).long()}, "^y:"),
        ({"gate": torch.randn(2, 1, 4).half()}, "^gate:"),
        ({"gate": torch.randn(2, 3, 4)}, "^gate:"),
        ({"gate": torch.randn(2, 1, 4), "scale": 0.5}, "^scale:"),
        ({"round_to_y": True}, "^round_to_y:"),
        ({"scale": "1"}, "^scale:"),
        ({"backend": "nope"}, "^backend:"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"x": torch.randn(2, 3, 4), "y": torch.randn(2, 3, 4), **kwargs}
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        residual_gate(x, y, **args)


def test_gradients_are_refused():
    y = torch.randn(2, 3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="^y: .*inference-only"):
        residual_gate(torch.randn(2, 3, 4), y)
    out = torch.ops.stagevar.residual_gate(torch.randn(2, 3, 4), y)
    with pytest.raises(RuntimeError, match="inference-only"):
        out.sum().backward()


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
def test_opcheck(layout):
    x = strided_like(torch.randn(2, 5, 12), layout)
    y = strided_like(torch.randn(2, 5, 12).bfloat16(), layout)
    g1, _ = _gates(2, 12)
    op = torch.ops.stagevar.residual_gate.default
    torch.library.opcheck(op, (x, y, g1), {"round_to_y": True})
    torch.library.opcheck(op, (x, y[:1]), {"scale": 0.5})
    grad_utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(op, (x, y.detach().requires_grad_(), g1), test_utils=grad_utils)


def test_compile_fullgraph():
    x, y = torch.randn(2, 5, 12), torch.randn(2, 5, 12).bfloat16()
    g1, g2 = _gates(2, 12)

    def fn(x, y):
        x = residual_gate(x, y, g1, round_to_y=True)
        x = residual_gate(x, y, scale=0.5)
        return residual_gate(x, y, g2)

    assert torch.equal(torch.compile(fn, fullgraph=True, backend="aot_eager")(x, y), fn(x, y))
