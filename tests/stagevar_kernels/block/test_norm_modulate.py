"""``norm_modulate``: the reference op equals the inline block code bit for bit; registration; argument checks."""

import pytest
import torch
import torch.nn.functional as F

from stagevar.models.infinity.blocks import ada_layer_norm
from stagevar.models.star.blocks import STARBlock
from stagevar_kernels.block import norm_modulate
from stagevar_kernels.testing import strided_like

DTYPES = [torch.float32, torch.bfloat16]
SHAPES = [(2, 5, 37), (1, 1, 1), (3, 7, 130)]


def _gss_scale_shift(rows, channels):
    """Scale and shift as Infinity slices them out of ``ada_gss + gss`` ``(R, 1, 6, C)``: strided views."""
    gss = torch.randn(rows, 1, 6, channels) * 0.3
    _, _, s1, _, sh1, _ = gss.unbind(2)
    return s1, sh1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
def test_infinity_ada_layer_norm_bit_exact(shape, dtype, layout):
    rows, _, channels = shape
    x = strided_like(torch.randn(shape).to(dtype) * 3 + 1, layout)
    scale, shift = _gss_scale_shift(rows, channels)
    for out_dtype in (None, torch.bfloat16):
        want = ada_layer_norm(x, scale, shift, 1e-6)
        want = want if out_dtype is None else want.to(out_dtype)
        got = norm_modulate(x, scale=scale, shift=shift, eps=1e-6, out_dtype=out_dtype)
        assert got.dtype == want.dtype and got.is_contiguous()
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinity_ca_norm_bit_exact(dtype):
    # The sequence of blocks.cross_attention: F.layer_norm(x.float(), ..., weight.float(), bias.float(), eps),
    # then _linear's cast to the weight dtype.
    norm = torch.nn.LayerNorm(37, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 9, 37).to(dtype)
    want = F.layer_norm(x.float(), (37,), norm.weight.float(), norm.bias.float(), norm.eps).to(torch.bfloat16)
    with torch.no_grad():
        got = norm_modulate(x, norm.weight.float(), norm.bias.float(), eps=norm.eps, out_dtype=torch.bfloat16)
    assert torch.equal(got, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_star_ln_wo_grad_bit_exact(shape):
    block = STARBlock(shape[2] if shape[2] % 2 == 0 else shape[2] + 1, 1, 8)
    ln = block.ln_wo_grad
    x = torch.randn(shape[0], shape[1], ln.normalized_shape[0]) * 2
    assert torch.equal(norm_modulate(x, eps=ln.eps), ln(x))


def test_broadcast_scale_rows():
    x = torch.randn(3, 4, 16)
    scale, shift = torch.randn(1, 1, 16), torch.randn(1, 1, 16)
    assert torch.equal(norm_modulate(x, scale=scale, shift=shift, eps=1e-5), ada_layer_norm(x, scale, shift, 1e-5))


def test_empty_rows():
    x = torch.randn(0, 4, 16)
    assert norm_modulate(x, eps=1e-6).shape == (0, 4, 16)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x": torch.randn(2, 3)}, "^x:"),
        ({"x": torch.randn(2, 3, 4).long()}, "^x:"),
        ({"weight": torch.randn(5)}, "^weight:"),
        ({"bias": torch.randn(4).half()}, "^bias:"),
        ({"scale": torch.randn(2, 1, 4)}, "^scale/shift:"),
        ({"scale": torch.randn(3, 1, 4), "shift": torch.randn(3, 1, 4)}, "^scale:"),
        ({"scale": torch.randn(2, 1, 4), "shift": torch.randn(2, 2, 4)}, "^shift:"),
        ({"eps": -1.0}, "^eps:"),
        ({"out_dtype": torch.int32}, "^out_dtype:"),
        ({"backend": "cuda"}, "^backend:"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"x": torch.randn(2, 3, 4), "eps": 1e-6, **kwargs}
    x = args.pop("x")
    with pytest.raises(ValueError, match=match):
        norm_modulate(x, **args)


def test_gradients_are_refused():
    x = torch.randn(2, 3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="^x: .*inference-only"):
        norm_modulate(x, eps=1e-6)
    y = torch.ops.stagevar.norm_modulate(x, eps=1e-6)
    with pytest.raises(RuntimeError, match="inference-only"):
        y.sum().backward()


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("affine", [False, True])
def test_opcheck(layout, affine):
    x = strided_like(torch.randn(2, 5, 12), layout)
    w, b = (torch.randn(12), torch.randn(12)) if affine else (None, None)
    scale, shift = _gss_scale_shift(2, 12)
    torch.library.opcheck(
        torch.ops.stagevar.norm_modulate.default, (x, w, b, scale, shift), {"eps": 1e-6, "out_dtype": torch.bfloat16}
    )
    # With inputs that require grad: registration is checked, but not the (deliberately failing) backward.
    grad_utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    x = x.detach().requires_grad_()
    torch.library.opcheck(torch.ops.stagevar.norm_modulate.default, (x,), {"eps": 1e-5}, test_utils=grad_utils)


def test_compile_fullgraph():
    x = torch.randn(2, 5, 12)
    scale, shift = _gss_scale_shift(2, 12)

    def fn(x, scale, shift):
        return norm_modulate(x, scale=scale, shift=shift, eps=1e-6, out_dtype=torch.bfloat16) * 2

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x, scale, shift), fn(x, scale, shift))
