"""The Triton ``norm_modulate`` kernel against the reference, to the tolerances of ``block.testing.TOLERANCES``.

CPU runs it under ``TRITON_INTERPRET=1`` (``tests/conftest.py``), CUDA compiled."""

import pytest
import torch

pytest.importorskip("triton")

from stagevar_kernels.block import norm_modulate, reference  # noqa: E402
from stagevar_kernels.block.testing import assert_close_to_reference  # noqa: E402
from stagevar_kernels.testing import strided_like  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(2, 5, 37), (1, 1, 1), (3, 7, 130), (1, 3, 2048)]


@pytest.fixture
def device(triton_device):
    return triton_device


def _check(x, weight=None, bias=None, scale=None, shift=None, eps=1e-6, out_dtype=None):
    want = reference.norm_modulate(x, weight, bias, scale, shift, eps, out_dtype)
    got = norm_modulate(x, weight, bias, scale, shift, eps=eps, out_dtype=out_dtype, backend="triton")
    assert got.dtype == want.dtype and got.shape == want.shape and got.is_contiguous()
    assert_close_to_reference("norm_modulate", got, want)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", [None, torch.float16, torch.bfloat16])
def test_adaln_matches_reference(device, shape, x_dtype, out_dtype):
    R, _, C = shape
    x = (torch.randn(shape) * 3 + 1).to(x_dtype).to(device)
    gss = torch.randn(R, 1, 6, C, device=device) * 0.5
    _check(x, scale=gss[:, :, 2], shift=gss[:, :, 4], out_dtype=out_dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("x_dtype", DTYPES)
def test_affine_and_plain_match_reference(device, shape, x_dtype):
    C = shape[2]
    x = (torch.randn(shape) * 2 - 1).to(x_dtype).to(device)
    w, b = torch.randn(C, device=device), torch.randn(C, device=device)
    _check(x, w, b, out_dtype=torch.bfloat16)
    _check(x, w, None)
    _check(x, eps=1e-5)


@pytest.mark.parametrize("layout", ["permuted", "sliced"])
def test_strided_inputs(device, layout):
    x = strided_like(torch.randn(3, 9, 40, device=device), layout)
    scale, shift = torch.randn(1, 1, 40, device=device), torch.randn(3, 1, 80, device=device)[:, :, ::2]
    _check(x, scale=scale, shift=shift, out_dtype=torch.bfloat16)


def test_constant_rows(device):
    # var = 0: rstd = 1/sqrt(eps) multiplies exact zeros; the output is the bias/shift exactly.
    x = torch.full((2, 3, 64), 3.25, device=device)
    w, b = torch.randn(64, device=device), torch.randn(64, device=device)
    got = norm_modulate(x, w, b, eps=1e-6, backend="triton")
    assert torch.equal(got, b.expand(2, 3, 64))
