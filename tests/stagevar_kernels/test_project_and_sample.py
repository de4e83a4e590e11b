"""The mathematics of project_and_sample, on the reference (and any other backend available here)."""

import math

import pytest
import torch

from stagevar_kernels import philox, project_and_sample, reference
from stagevar_kernels.testing import assert_projection_close, device_backend_pairs, strided_like

# Reference first: these properties define the op; other backends are compared with it elsewhere.


@pytest.mark.parametrize("shape,rank", [((1, 1, 1), 1), ((2, 37, 19), 7), ((3, 61, 33), 61), ((1, 97, 8), 5)])
def test_shapes_sorted_distinct(shape, rank):
    x = torch.randn(shape)
    xr, idx = reference.project_and_sample(x, rank, seed=11)
    assert xr.shape == (shape[0], rank, shape[2]) and xr.dtype == x.dtype
    assert idx.shape == (shape[0], rank) and idx.dtype == torch.int64
    assert torch.equal(idx, idx.sort(dim=-1).values)
    for row in idx:
        assert len(set(row.tolist())) == rank
        assert 0 <= row.min() and row.max() < shape[1]


def test_xr_is_q_transpose_x():
    x = torch.randn(2, 29, 11, dtype=torch.float64).float()
    xr, _ = reference.project_and_sample(x, 6, seed=5)
    q = philox.projection_matrix(5, batch=2, rows=29, rank=6)
    torch.testing.assert_close(xr, torch.bmm(q.transpose(1, 2), x), atol=1e-5, rtol=1e-5)


def test_projection_is_linear_in_x():
    x1, x2 = torch.randn(2, 2, 40, 16)
    a = 2.5
    xr1, _ = reference.project_and_sample(x1, 9, seed=3)
    xr2, _ = reference.project_and_sample(x2, 9, seed=3)
    xr12, _ = reference.project_and_sample(a * x1 + x2, 9, seed=3)
    torch.testing.assert_close(xr12, a * xr1 + xr2, atol=1e-4, rtol=1e-4)


def test_expected_gram_matrix_is_preserved():
    # E[Q Q^T] = I, so the mean of xr^T xr over independent draws is x^T x. Batch items use distinct
    # counters, so a batch of copies of x gives independent draws in one call.
    draws, rows, channels, rank = 20000, 6, 3, 4
    x = torch.randn(rows, channels)
    xr, _ = reference.project_and_sample(x.expand(draws, rows, channels).contiguous(), rank, seed=17)
    mean_gram = torch.einsum("nrc,nrd->cd", xr.double(), xr.double()) / draws
    want = (x.T @ x).double()
    assert (mean_gram - want).norm() < 0.05 * want.norm()


def _chi_square_bound(dof: int) -> float:
    # Wilson-Hilferty approximation of the chi-square quantile at p = 1e-4 (z = 3.719).
    z = 3.719
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def test_single_draw_frequencies_follow_squared_norms():
    draws = 20000
    scales = torch.tensor([0.2, 1.0, 0.5, 2.0, 1.5, 0.0, 0.7, 1.2])
    x = scales.view(1, -1, 1) * torch.ones(draws, 8, 4)
    _, idx = reference.project_and_sample(x, 1, seed=2024)
    counts = torch.bincount(idx.flatten(), minlength=8).double()
    w = (scales**2 * 4).double()
    expected = draws * w / w.sum()
    assert counts[5] == 0  # a zero row is never drawn while others remain
    nz = expected > 0
    chi2 = (((counts[nz] - expected[nz]) ** 2) / expected[nz]).sum().item()
    assert chi2 < _chi_square_bound(int(nz.sum()) - 1)


def test_two_draws_follow_sampling_without_replacement():
    draws = 20000
    w = torch.tensor([1.0, 4.0, 2.0, 0.5, 3.0])
    x = w.sqrt().view(1, -1, 1) * torch.ones(draws, 5, 1)
    _, idx = reference.project_and_sample(x, 2, seed=99)
    counts = torch.bincount(idx.flatten(), minlength=5).double()
    total = w.sum().item()
    # P(i in sample) = w_i/W + sum_{j != i} (w_j/W) * w_i/(W - w_j)
    incl = torch.tensor(
        [w[i] / total + sum(w[j] / total * w[i] / (total - w[j]) for j in range(5) if j != i) for i in range(5)],
        dtype=torch.float64,
    )
    expected = draws * incl
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    assert chi2 < _chi_square_bound(4)


def test_zero_and_non_finite_rows_are_drawn_last_lowest_first():
    x = torch.randn(1, 10, 4)
    x[0, [1, 4, 6]] = 0
    x[0, 8, 2] = math.inf
    x[0, 2, 0] = math.nan
    _, idx = reference.project_and_sample(x, 7, seed=1)
    # 5 rows are valid (0, 3, 5, 7, 9): all chosen, then the two lowest invalid rows (1, 2).
    assert idx[0].tolist() == [0, 1, 2, 3, 5, 7, 9]


def test_same_seed_same_result_other_seed_other_result():
    x = torch.randn(2, 50, 8)
    a = reference.project_and_sample(x, 10, 7)
    b = reference.project_and_sample(x, 10, 7)
    c = reference.project_and_sample(x, 10, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device,backend", device_backend_pairs())
def test_backends_match_reference(device, backend, dtype, layout):
    x32 = torch.randn(2, 37, 19)
    x = strided_like(x32.to(device=device, dtype=dtype), layout)
    want_idx = reference.project_and_sample(x.cpu().float(), 5, seed=123)[1]
    xr, idx = project_and_sample(x, 5, 123, backend=backend)
    assert xr.dtype == dtype and xr.is_contiguous()
    assert_projection_close(xr.cpu(), x.cpu(), 5, 123)
    # Low-precision inputs are squared in fp32 from the same values, so the draws agree exactly.
    assert torch.equal(idx.cpu(), reference.project_and_sample(x.cpu(), 5, seed=123)[1])
    assert torch.equal(idx.cpu(), want_idx) or dtype != torch.float32


@pytest.mark.parametrize("shape", [(), (1,)])
@pytest.mark.parametrize("device,backend", device_backend_pairs())
def test_device_seed_equals_int_seed(device, backend, shape):
    # The graph-replayable form: the seed lives in a one-element int64 tensor that the caller rewrites in place.
    x = torch.randn(2, 37, 19, device=device)
    seed_t = torch.full(shape, 2**33 + 5, dtype=torch.int64, device=device)
    for value in (2**33 + 5, 7, philox.MAX_SEED):
        seed_t.fill_(value)
        xr_t, idx_t = project_and_sample(x, 5, seed_t, backend=backend)
        xr_i, idx_i = project_and_sample(x, 5, value, backend=backend)
        assert torch.equal(idx_t, idx_i) and torch.equal(xr_t, xr_i)


def test_reference_random_stream_accepts_tensor_seeds():
    seed_t = torch.tensor(2**40 + 3)
    assert torch.equal(philox.standard_normals(seed_t, 2, 5, 9), philox.standard_normals(2**40 + 3, 2, 5, 9))
    assert torch.equal(philox.gumbel_noise(seed_t, 2, 50), philox.gumbel_noise(2**40 + 3, 2, 50))
