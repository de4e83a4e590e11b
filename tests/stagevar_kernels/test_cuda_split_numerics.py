"""CPU tier: the arithmetic of the CUDA backend's projection GEMM, emulated in torch, against the reference.

The CUDA ``project_and_sample`` (csrc/include/stagevar/project_prepare.cuh) multiplies split 16-bit operands on the
tensor cores with an fp32 result: ``A = [Q_hi | Q_lo]``, ``X = [x ; fin(x)]`` for 16-bit ``x`` and
``A = [Q_hi | Q_hi | Q_lo]``, ``X = [x_hi ; x_lo ; fin(x_hi)]`` (bfloat16) for fp32 ``x``. The splits are checked
bit for bit against the C++ code by test_cuda_headers_compile.py; here the same splits feed an fp32 product (the
products of 16-bit values are exact in fp32, so only the accumulation order differs from cuBLAS) and the result is
held to the documented accuracy at the Infinity-2B 40x40, 48x48 and 64x64 token counts (D reduced to 256: the
error per entry depends on M, not on D):
- fp16/bf16 ``x``: at least 99% of ``xr`` equal to the float32 reference rounded to ``x.dtype`` (fp32-accurate
  before the final rounding; the rest differ where the fp32 accumulation order moves a value across a rounding
  boundary), all within the suite's tolerance for the dtype;
- fp32 ``x``: median relative error below 1e-5 and every entry within the fp32 tolerance of the test suite
  (measured at D=2048: median 4.4e-6, max abs error 5e-5 for entries of magnitude ~2.4);
- non-finite ``x``: inf and NaN land exactly where the reference puts them.
"""

import pytest
import torch

from stagevar_kernels import philox, reference
from stagevar_kernels.testing import tolerance


def _split(v, dtype):
    hi = v.to(dtype)
    return hi, (v - hi.float()).to(dtype)


def _finite_or_zero(v):
    return torch.where(torch.isfinite(v), v, torch.zeros_like(v))


def split_gemm(x, rank, seed):
    """xr as the CUDA backend computes it (up to the fp32 accumulation order), in x.dtype. x: (B, M, D)."""
    batch, rows, _ = x.shape
    q = philox.projection_matrix(seed, batch, rows, rank)  # float32(n * s), (B, M, r)
    if x.dtype == torch.float32:
        q_hi, q_lo = _split(q, torch.bfloat16)
        x_hi = x.to(torch.bfloat16)
        overflow = torch.isfinite(x) & torch.isinf(x_hi.float())
        assert not overflow.any()  # the truncating fallback is covered by the host check
        x_lo = _finite_or_zero(x - x_hi.float()).to(torch.bfloat16)
        a = torch.cat([q_hi, q_hi, q_lo], dim=1)
        xs = torch.cat([x_hi, x_lo, _finite_or_zero(x_hi.float()).to(torch.bfloat16)], dim=1)
    else:
        q_hi, q_lo = _split(q, x.dtype)
        a = torch.cat([q_hi, q_lo], dim=1)
        xs = torch.cat([x, _finite_or_zero(x.float()).to(x.dtype)], dim=1)
    return torch.bmm(a.float().transpose(1, 2), xs.float()).to(x.dtype)


@pytest.mark.parametrize(
    "rows,rank",
    [(1600, 282), pytest.param(2304, 400, marks=pytest.mark.slow), pytest.param(4096, 700, marks=pytest.mark.slow)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_split_gemm_accuracy(rows, rank, dtype):
    x = torch.randn(1, rows, 256, generator=torch.Generator().manual_seed(rows)).to(dtype)
    want = reference.project_and_sample(x.float(), rank, 11)[0]
    got = split_gemm(x, rank, 11)
    if dtype == torch.float32:
        rel = (got - want).abs() / want.abs().clamp_min(1e-3)
        assert rel.median() < 1e-5
        torch.testing.assert_close(got, want, **tolerance(dtype))
    else:
        # The fp32 results differ from the reference's by the accumulation order only, so after the rounding to
        # x.dtype nearly all entries are identical (measured: 99.6-99.8%).
        assert (got == want.to(dtype)).float().mean() >= 0.99
        torch.testing.assert_close(got.float(), want, **tolerance(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_split_gemm_non_finite_like_reference(dtype):
    x = torch.randn(2, 60, 24, generator=torch.Generator().manual_seed(1)).to(dtype)
    x[0, 5, 3] = float("inf")
    x[0, 9, 4] = float("-inf")
    x[1, 11, 6] = float("inf")
    x[1, 12, 6] = float("inf")
    x[1, 20, 7] = float("nan")
    x[0, 30] = float("inf")
    want = reference.project_and_sample(x.float(), 16, 4)[0]
    got = split_gemm(x, 16, 4)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    both_inf = torch.isinf(want)
    assert torch.equal(torch.sign(got[both_inf]), torch.sign(want[both_inf]).to(dtype))
    # A plain hi + lo split of Q against the unmasked x would turn some of these infinities into NaN.
    q = philox.projection_matrix(4, 2, 60, 16)
    g = torch.bfloat16 if dtype == torch.float32 else dtype
    q_hi, q_lo = _split(q, g)
    naive = torch.bmm(q_hi.float().transpose(1, 2), x.float()) + torch.bmm(q_lo.float().transpose(1, 2), x.float())
    assert torch.isnan(naive).sum() > torch.isnan(want).sum()
