"""CPU tier: the arithmetic of the CUDA backend's projection GEMM, emulated in torch, against the reference.

The CUDA ``project_and_sample`` (csrc/include/stagevar/project_prepare.cuh) multiplies split 16-bit operands on the
tensor cores with an fp32 result: ``A = [Q0 | Q1]``, ``X = [x ; fin(x)]`` for 16-bit ``x`` and
``A = [Q0 | Q0 | Q1 | Q0 | Q1 | Q2]``, ``X = [x0 ; x1 ; fin(x0) ; x2 ; x1 ; fin(x0)]`` (bfloat16 three-way splits)
for fp32 ``x``. The splits are checked
bit for bit against the C++ code by test_cuda_headers_compile.py; here the same splits feed an fp32 product (the
products of 16-bit values are exact in fp32, so only the accumulation order differs from cuBLAS) and the result is
held to the documented accuracy at the Infinity-2B 40x40, 48x48 and 64x64 token counts (D reduced to 256: the
error per entry depends on M, not on D):
- fp16/bf16 ``x``: at least 99% of ``xr`` equal to the float32 reference rounded to ``x.dtype`` (fp32-accurate
  before the final rounding; the rest differ where the fp32 accumulation order moves a value across a rounding
  boundary), all within the suite's tolerance for the dtype;
- fp32 ``x``: every entry within ``2**-20 * S + 2**-23 * |xr_ref|`` of the reference, ``S = |Q|^T |x|`` (the
  projection accuracy contract's fp32 row), also at small M where a two-way split (3 terms) would not be;
- non-finite ``x``: inf and NaN land exactly where the reference puts them.
"""

import pytest
import torch

from stagevar_kernels import philox, reference
from stagevar_kernels.testing import tolerance


def _split(v, dtype, parts):
    """v = sum of `parts` values of dtype, each the rounding of what the previous ones leave (exact differences)."""
    out, rest = [], v
    for _ in range(parts):
        out.append(rest.to(dtype))
        rest = rest - out[-1].float()
    return out


def _finite_or_zero(v):
    return torch.where(torch.isfinite(v), v, torch.zeros_like(v))


def split_gemm(x, rank, seed):
    """xr as the CUDA backend computes it (up to the fp32 accumulation order), in x.dtype. x: (B, M, D)."""
    batch, rows, _ = x.shape
    q = philox.projection_matrix(seed, batch, rows, rank)  # float32(n * s), (B, M, r)
    if x.dtype == torch.float32:
        bf16 = torch.bfloat16
        q0, q1, q2 = _split(q, bf16, 3)
        assert not (torch.isfinite(x) & torch.isinf(x.to(bf16).float())).any()  # truncation: see the host check
        x0, x1, x2 = _split(_finite_or_zero(x), bf16, 3)
        x0 = x.to(bf16)  # carries the infinities and NaNs; x1, x2 are 0 there
        fin0 = _finite_or_zero(x0.float()).to(bf16)
        a = torch.cat([q0, q0, q1, q0, q1, q2], dim=1)
        xs = torch.cat([x0, x1, fin0, x2, x1, fin0], dim=1)
    else:
        q0, q1 = _split(q, x.dtype, 2)
        a = torch.cat([q0, q1], dim=1)
        xs = torch.cat([x, _finite_or_zero(x.float()).to(x.dtype)], dim=1)
    return torch.bmm(a.float().transpose(1, 2), xs.float()).to(x.dtype)


def _scale_of_error(x, rank, seed):
    q = philox.projection_matrix(seed, x.shape[0], x.shape[1], rank)
    return torch.bmm(q.abs().transpose(1, 2), x.float().abs())


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
        bound = 2.0**-20 * _scale_of_error(x, rank, 11) + 2.0**-23 * want.abs()
        assert ((got - want).abs() <= bound).all()
    else:
        # The fp32 results differ from the reference's by the accumulation order only, so after the rounding to
        # x.dtype nearly all entries are identical (measured: 99.6-99.8%).
        assert (got == want.to(dtype)).float().mean() >= 0.99
        torch.testing.assert_close(got.float(), want, **tolerance(dtype))


@pytest.mark.parametrize("rows,rank", [(37, 5), (130, 64), (257, 70)])
def test_split_gemm_fp32_small_m(rows, rank):
    # The relative size of the rounding errors against S grows as M shrinks: the contract's bound still holds.
    x = torch.randn(2, rows, 96, generator=torch.Generator().manual_seed(rows))
    want = reference.project_and_sample(x, rank, 3)[0]
    bound = 2.0**-20 * _scale_of_error(x, rank, 3) + 2.0**-23 * want.abs()
    assert ((split_gemm(x, rank, 3) - want).abs() <= bound).all()


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
    q_hi, q_lo = _split(q, g, 2)
    naive = torch.bmm(q_hi.float().transpose(1, 2), x.float()) + torch.bmm(q_lo.float().transpose(1, 2), x.float())
    assert torch.isnan(naive).sum() > torch.isnan(want).sum()
