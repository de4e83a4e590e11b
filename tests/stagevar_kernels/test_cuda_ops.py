"""The CUDA C++ kernels (backend="cuda", csrc/) against the reference on a GPU. Skipped without one.

Reference first (on the same device, so both use CUDA's logf), then the kernel: identical ``idx``, ``xr`` within
``testing.PROJECTION_TOLERANCE``; restore rows equal to F.interpolate + scatter, with out-of-range and duplicate
indices. Also: cross-backend equality over ``available_backends("cuda")``, C++ errors reaching Python, CUDA-graph
capture (no host sync). The sanitizer stage of scripts/gpu_check.py runs a few representative op calls under
memcheck and racecheck.
"""

import pytest
import torch

from stagevar_kernels import available_backends, philox, project_and_sample, reference, restore_merge
from stagevar_kernels.reference import RESTORE_MODES
from stagevar_kernels.testing import strided_like, tolerance

HAS_CUDA_BACKEND = torch.cuda.is_available() and "cuda" in available_backends("cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_CUDA_BACKEND, reason="needs a CUDA device and the extension built with CUDA"),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "permuted", "sliced"]
DEV = "cuda"


@pytest.fixture(autouse=True)
def _exact_fp32_matmul():
    # The fp32 reference product must not run in TF32 (a global another test or the user may have switched on).
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


def _cuda_project(x, rank, seed, seed_tensor=None):
    return torch.ops.stagevar._project_and_sample_cuda(x, rank, seed, seed_tensor)


def _cuda_restore(y, idx, cache, src, dst, mode):
    return torch.ops.stagevar._restore_merge_cuda(y, idx, cache, list(src), list(dst), mode)


def _check_project(x, rank, seed):
    want_xr, want_idx = reference.project_and_sample(x, rank, seed)
    xr, idx = _cuda_project(x, rank, seed)
    assert xr.shape == want_xr.shape and xr.dtype == x.dtype and xr.is_contiguous()
    assert idx.dtype == torch.int64 and idx.shape == want_idx.shape
    assert torch.equal(idx, want_idx)
    # Against the fp32 product of the same (rounded) inputs: the kernels accumulate in fp32.
    want32 = reference.project_and_sample(x.float(), rank, seed)[0]
    torch.testing.assert_close(xr.float(), want32, **tolerance(x.dtype))
    if x.dtype == torch.float32:  # the six-product bf16 split: within 2**-20 |Q|^T |x| (+ output rounding)
        q = philox.projection_matrix(seed, x.shape[0], x.shape[1], rank, device=DEV)
        bound = 2.0**-20 * torch.bmm(q.abs().transpose(1, 2), x.abs()) + 2.0**-23 * want32.abs()
        assert ((xr - want32).abs() <= bound).all()


# ---------------------------------------------------------------------------------------------- project_and_sample
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "batch,rows,channels,rank",
    [(1, 1, 1, 1), (2, 37, 19, 5), (3, 130, 100, 64), (2, 257, 129, 70), (1, 769, 200, 97), (2, 65, 64, 65)],
)
def test_project_matches_reference(batch, rows, channels, rank, dtype, layout):
    x = strided_like(torch.randn(batch, rows, channels, device=DEV).to(dtype), layout)
    _check_project(x, rank, seed=1234)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [130, 100, 64])
def test_project_row_strided_vector_loads_and_tail(dtype, channels):
    # Unit channel stride, 16-byte aligned rows: the 16-byte load path, with a partial last vector for 130.
    x = torch.randn(2, 75, 136, device=DEV).to(dtype)[:, :, :channels]
    _check_project(x, 33, seed=8)
    _check_project(x[:, 1:], 33, seed=8)  # base pointer off by one row: still aligned (136 * size)
    _check_project(x[:, :, 1:], 33, seed=8)  # base pointer off by one element: element loads


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_infinity_2b_shape(dtype):
    # 40x40 scale of Infinity-2B: a 282 x 1600 by 1600 x 2048 product per image.
    x = torch.randn(2, 1600, 2048, device=DEV).to(dtype)
    _check_project(x, 282, seed=2**40 + 77)


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32 + 7, 2**63 - 1])
def test_project_seeds_across_key_words(seed):
    x = torch.randn(2, 90, 33, device=DEV)
    _check_project(x, 17, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 5, 2**32 + 7, 2**63 - 1])
def test_project_seed_tensor_replaces_the_int(dtype, seed):
    # The device seed wins over the int argument (which is deliberately different) and gives the int seed's result.
    x = torch.randn(2, 130, 72, device=DEV).to(dtype)
    seed_tensor = torch.tensor([seed], dtype=torch.int64, device=DEV)
    xr, idx = _cuda_project(x, 21, 999, seed_tensor)
    want_xr, want_idx = _cuda_project(x, 21, seed)
    assert torch.equal(idx, want_idx) and torch.equal(xr, want_xr)
    assert torch.equal(idx, reference.project_and_sample(x, 21, seed)[1])


def test_project_seed_tensor_checked():
    x = torch.randn(1, 10, 4, device=DEV)
    with pytest.raises(RuntimeError, match="seed_tensor"):
        _cuda_project(x, 2, 1, torch.tensor([1], dtype=torch.int32, device=DEV))
    with pytest.raises(RuntimeError, match="seed_tensor"):
        _cuda_project(x, 2, 1, torch.tensor([1, 2], dtype=torch.int64, device=DEV))
    with pytest.raises(RuntimeError, match="seed_tensor"):
        _cuda_project(x, 2, 1, torch.tensor([1], dtype=torch.int64))


def test_project_large_m_any_size():
    # M above the selection's shared-memory key cache (4096): keys are streamed from global memory. (Q is
    # materialised, r x 3M x 2 bytes for fp32 x, so the sizes stay moderate.)
    x = torch.randn(2, 9000, 3, device=DEV)
    _check_project(x, 2000, seed=5)
    _check_project(x[:, :6000], 6000, seed=6)  # rank == M takes every row


def test_project_zero_and_non_finite_rows_drawn_last_lowest_first():
    x = torch.randn(2, 50, 16, device=DEV)
    x[:, 10:30] = 0.0
    x[0, 40] = float("inf")
    x[1, 41, 3] = float("nan")
    _, idx = _cuda_project(x, 30, seed=3)
    assert torch.equal(idx, reference.project_and_sample(x, 30, 3)[1])
    # Batch 0 has 29 regular rows (not 10..29, not the inf row 40): all of them, then row 10, the lowest -inf one.
    assert idx[0].tolist() == sorted([i for i in range(50) if not 10 <= i < 30 and i != 40] + [10])


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_non_finite_inputs_give_the_reference_xr(dtype):
    # inf meets only Q_hi (same sign as Q) in the split GEMM: +-inf where the fp32 reference has +-inf, NaN where it
    # sums opposite infinities or meets a NaN; finite columns stay finite and accurate.
    x = torch.randn(2, 70, 40, device=DEV).to(dtype)
    x[0, 5, 3] = float("inf")
    x[0, 9, 4] = float("-inf")
    x[1, 11, 6] = float("inf")
    x[1, 12, 6] = float("inf")  # two infinities in one channel: +-inf or NaN per output row, as the reference
    x[1, 20, 7] = float("nan")
    x[0, 30] = float("inf")  # a whole row
    if dtype == torch.float32:
        x[1, 40, 1] = 3.4e38  # finite, but its bf16 rounding overflows: the split truncates instead
    xr, idx = _cuda_project(x, 24, seed=17)
    want = reference.project_and_sample(x.float(), 24, 17)[0]
    torch.testing.assert_close(xr.float(), want, equal_nan=True, **tolerance(dtype))
    assert torch.equal(torch.isnan(xr), torch.isnan(want)) and torch.equal(torch.isinf(xr), torch.isinf(want))
    assert torch.equal(idx, reference.project_and_sample(x, 24, 17)[1])


def test_project_deterministic():
    x = torch.randn(3, 300, 70, device=DEV, dtype=torch.bfloat16)
    a = _cuda_project(x, 40, 9)
    b = _cuda_project(x, 40, 9)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_q_is_the_contract_matrix(dtype):
    # xr of an identity-like x reads Q back: x[b] = I (M x M) gives xr[b] = Q_b^T (both kernels, hi/lo split too).
    rows = 48
    x = torch.eye(rows, device=DEV).unsqueeze(0).repeat(2, 1, 1).to(dtype)
    xr, _ = _cuda_project(x, 12, seed=77)
    q = philox.projection_matrix(77, 2, rows, 12, device=DEV)
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else tolerance(dtype)
    torch.testing.assert_close(xr.float(), q.transpose(1, 2).to(dtype).float(), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_small(dtype):
    """Small case for the sanitizers (several rank tiles, several channel tiles, partial tiles)."""
    x = torch.randn(2, 70, 130, device=DEV).to(dtype)
    _check_project(x, 66, seed=11)


# ---------------------------------------------------------------------------------------------------- restore_merge
def _reference_restore(y, idx, cache, src, dst, mode):
    """The contract written out: upsampled cache, then a sequential scatter in j order (the largest j wins among
    duplicates; out-of-range entries are skipped), whatever the order of idx."""
    want = reference.upsample_rows(cache, src, dst, mode).to(y.dtype).clone()
    rows = dst[0] * dst[1]
    for b in range(idx.shape[0]):
        for j, p in enumerate(idx[b].tolist()):
            if 0 <= p < rows:
                want[b, p] = y[b, j]
    return want


def _check_restore(y, idx, cache, src, dst, mode):
    out = _cuda_restore(y, idx, cache, src, dst, mode)
    want = _reference_restore(y, idx, cache, src, dst, mode)
    assert out.shape == want.shape and out.dtype == y.dtype and out.is_contiguous()
    torch.testing.assert_close(out.float(), want.float(), **tolerance(y.dtype))
    # Rows taken from y are bit-exact copies.
    rows = dst[0] * dst[1]
    for b in range(idx.shape[0]):
        for p in set(v for v in idx[b].tolist() if 0 <= v < rows):
            assert torch.equal(out[b, p], want[b, p]), (b, p)
    return out


def _indices(batch, rank, rows, with_bad=True):
    idx = torch.stack([torch.randperm(rows)[:rank] for _ in range(batch)])
    if with_bad and rank >= 4:
        idx[:, 0] = -1  # out of range below
        idx[:, 1] = rows  # one past the end
        idx[:, 2] = idx[:, 3]  # a duplicate
        idx[0, 3:5] = rows + 1000  # far out of range
    return idx.to(DEV)


@pytest.mark.parametrize("mode", RESTORE_MODES)
@pytest.mark.parametrize(
    "src,dst",
    [((3, 5), (7, 9)), ((8, 8), (4, 4)), ((5, 7), (5, 7)), ((1, 1), (3, 2)), ((6, 4), (9, 4)), ((7, 3), (2, 5))],
)
def test_restore_matches_reference(mode, src, dst):
    channels, rank = 24, min(8, dst[0] * dst[1])
    y = torch.randn(2, rank, channels, device=DEV)
    cache = torch.randn(2, src[0] * src[1], channels, device=DEV)
    _check_restore(y, _indices(2, rank, dst[0] * dst[1]), cache, src, dst, mode)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", RESTORE_MODES)
@pytest.mark.parametrize("channels", [1, 7, 64, 136])  # 64/136: 16-byte vectors for every dtype; 1/7: scalar path
def test_restore_dtypes_layouts_channels(mode, dtype, layout, channels):
    src, dst, rank = (4, 5), (7, 6), 9
    y = strided_like(torch.randn(2, rank, channels, device=DEV).to(dtype), layout)
    cache = strided_like(torch.randn(2, src[0] * src[1], channels, device=DEV).to(dtype), layout)
    _check_restore(y, _indices(2, rank, dst[0] * dst[1]), cache, src, dst, mode)


def test_restore_unaligned_base_pointer_takes_scalar_path():
    base = torch.randn(2 * 9 * 64 + 1, device=DEV, dtype=torch.float16)
    y = base[1:].view(2, 9, 64)  # 2-byte offset: not 16-byte aligned
    cache = torch.randn(2, 20, 64, device=DEV, dtype=torch.float16)
    _check_restore(y, _indices(2, 9, 42), cache, (4, 5), (7, 6), "bilinear")


@pytest.mark.parametrize("mode", RESTORE_MODES)
def test_restore_row_strided_inputs_read_in_place(mode):
    # Unit channel stride, other strides arbitrary: read through the strides (no copy), vector path.
    y = torch.randn(2, 18, 64, device=DEV, dtype=torch.bfloat16)[:, ::2]
    cache = torch.randn(3, 40, 64, device=DEV, dtype=torch.bfloat16)[::2, ::2]
    _check_restore(y, _indices(2, 9, 42), cache, (4, 5), (7, 6), mode)


def test_restore_strided_idx_and_all_out_of_range():
    y = torch.randn(2, 6, 16, device=DEV)
    cache = torch.randn(2, 12, 16, device=DEV)
    wide = torch.randint(0, 30, (2, 12), device=DEV)
    _check_restore(y, wide[:, ::2], cache, (3, 4), (5, 6), "bicubic")
    bad = torch.full((2, 6), 10**9, device=DEV, dtype=torch.int64)
    bad[1] = -(10**9)
    out = _check_restore(y, bad, cache, (3, 4), (5, 6), "area")
    torch.testing.assert_close(out, reference.upsample_rows(cache, (3, 4), (5, 6), "area"))


def test_restore_duplicates_largest_j_wins():
    y = torch.arange(6, device=DEV, dtype=torch.float32).view(1, 6, 1).expand(1, 6, 3).contiguous()
    cache = torch.full((1, 4, 3), -5.0, device=DEV)
    idx = torch.tensor([[2, 7, 2, 2, 9, 1]], device=DEV)  # unsorted, a triple duplicate, one out of range
    out = _cuda_restore(y, idx, cache, (2, 2), (3, 3), "nearest")
    assert out[0, 2, 0].item() == 3.0 and out[0, 7, 0].item() == 1.0 and out[0, 1, 0].item() == 5.0
    assert (out[0, [0, 3, 4, 5, 6, 8]] == -5.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_restore_unsorted_and_sorted_idx_agree(dtype):
    # The source scan relies on no order: a permutation of (idx, y) pairs gives the same output.
    rows, rank = 48 * 48, 400
    y = torch.randn(2, rank, 64, device=DEV).to(dtype)
    cache = torch.randn(2, 32 * 32, 64, device=DEV).to(dtype)
    idx = torch.stack([torch.randperm(rows)[:rank] for _ in range(2)]).to(DEV)
    order = torch.argsort(idx, dim=1)
    sorted_out = _cuda_restore(
        torch.gather(y, 1, order.unsqueeze(-1).expand(-1, -1, 64)),
        idx.gather(1, order),
        cache,
        (32, 32),
        (48, 48),
        "area",
    )
    assert torch.equal(_cuda_restore(y, idx, cache, (32, 32), (48, 48), "area"), sorted_out)
    _check_restore(y, idx, cache, (32, 32), (48, 48), "area")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", RESTORE_MODES)
def test_restore_small(mode, dtype):
    """Small case for the sanitizers: out-of-range and duplicate indices, vector and scalar paths."""
    for channels in (8, 5):
        y = torch.randn(2, 6, channels, device=DEV).to(dtype)
        cache = torch.randn(2, 6, channels, device=DEV).to(dtype)
        _check_restore(y, _indices(2, 6, 20), cache, (2, 3), (4, 5), mode)


# ---------------------------------------------------------------------------------------------------- cross-backend
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_backends_agree(dtype):
    backends = available_backends(DEV)
    x = torch.randn(2, 333, 96, device=DEV).to(dtype)
    results = {name: project_and_sample(x, 50, 21, backend=name) for name in backends}
    for name, (xr, idx) in results.items():
        assert torch.equal(idx, results["reference"][1]), name
        torch.testing.assert_close(xr.float(), results["reference"][0].float(), **tolerance(dtype), msg=name)
    y = torch.randn(2, 50, 96, device=DEV).to(dtype)
    cache = torch.randn(2, 12 * 12, 96, device=DEV).to(dtype)
    idx = results["reference"][1]
    for mode in RESTORE_MODES:
        outs = {name: restore_merge(y, idx, cache, (12, 12), (18, 19), mode, backend=name) for name in backends}
        for name, out in outs.items():
            torch.testing.assert_close(out.float(), outs["reference"].float(), **tolerance(dtype), msg=name)


def test_public_ops_default_to_cuda_backend():
    from stagevar_kernels import default_backend

    assert default_backend(DEV) == "cuda"
    x = torch.randn(1, 40, 8, device=DEV)
    assert torch.equal(project_and_sample(x, 4, 1)[1], reference.project_and_sample(x, 4, 1)[1])


# ---------------------------------------------------------------------------------------- errors, graphs, registration
def test_cpp_errors_reach_python():
    x = torch.randn(1, 10, 4, device=DEV)
    with pytest.raises(RuntimeError, match="rank"):
        _cuda_project(x, 0, 1)
    with pytest.raises(RuntimeError, match="rank"):
        _cuda_project(x, 11, 1)
    with pytest.raises(RuntimeError, match="seed"):
        _cuda_project(x, 2, -1)
    with pytest.raises(RuntimeError):  # no CPU kernel: the dispatcher refuses (NotImplementedError)
        _cuda_project(x.cpu(), 2, 1)
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        _cuda_project(x.double(), 2, 1)
    with pytest.raises(RuntimeError, match=r"\(B, M, D\)"):
        _cuda_project(x[0], 2, 1)
    y = torch.randn(1, 3, 4, device=DEV)
    idx = torch.tensor([[0, 1, 2]], device=DEV)
    cache = torch.randn(1, 4, 4, device=DEV)
    with pytest.raises(RuntimeError, match="mode"):
        _cuda_restore(y, idx, cache, (2, 2), (3, 3), "trilinear")
    with pytest.raises(RuntimeError, match="src_hw"):
        _cuda_restore(y, idx, cache, (2, 3), (3, 3), "area")
    with pytest.raises(RuntimeError, match="int64"):
        _cuda_restore(y, idx.int(), cache, (2, 2), (3, 3), "area")
    with pytest.raises(RuntimeError, match="dtype"):
        _cuda_restore(y, idx, cache.half(), (2, 2), (3, 3), "area")
    with pytest.raises(RuntimeError, match="fewer"):
        _cuda_restore(y, idx, cache, (2, 2), (1, 2), "area")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        _cuda_restore(y, idx.cpu(), cache, (2, 2), (3, 3), "area")


def test_capturable_in_cuda_graph():
    # No host synchronisation: both ops can be captured and replayed.
    x = torch.randn(2, 100, 64, device=DEV, dtype=torch.bfloat16)
    cache = torch.randn(2, 25, 64, device=DEV, dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up (cuBLAS handle and workspace) on a side stream, outside the capture
        _cuda_project(x, 20, 4)
        _cuda_restore(x[:, :20], torch.zeros(2, 20, dtype=torch.int64, device=DEV), cache, (5, 5), (10, 10), "area")
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        xr, idx = _cuda_project(x, 20, 4)
        out = _cuda_restore(xr, idx, cache, (5, 5), (10, 10), "area")
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    want_xr, want_idx = reference.project_and_sample(x, 20, 4)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(xr.float(), reference.project_and_sample(x.float(), 20, 4)[0], **tolerance(x.dtype))
    _check_restore(xr, idx, cache, (5, 5), (10, 10), "area")
    assert out.shape == (2, 100, 64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_replay_draws_the_updated_seed_tensor(dtype):
    # One captured graph serves every generation: overwriting the seed tensor between replays changes Q and idx,
    # and every replay equals the eager call with that seed.
    x = torch.randn(2, 300, 96, device=DEV).to(dtype)
    cache = torch.randn(2, 100, 96, device=DEV).to(dtype)
    seed_tensor = torch.tensor([3], dtype=torch.int64, device=DEV)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up (cuBLAS handles, workspaces) outside the capture
        xr, idx = _cuda_project(x, 40, 0, seed_tensor)
        _cuda_restore(xr, idx, cache, (10, 10), (15, 20), "bilinear")
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        xr, idx = _cuda_project(x, 40, 0, seed_tensor)
        out = _cuda_restore(xr, idx, cache, (10, 10), (15, 20), "bilinear")
    seen = []
    for seed in (3, 2**32 + 9, 77):
        seed_tensor.fill_(seed)
        graph.replay()
        torch.cuda.synchronize()
        want_xr, want_idx = _cuda_project(x, 40, seed)
        assert torch.equal(idx, want_idx) and torch.equal(xr, want_xr)
        assert torch.equal(idx, reference.project_and_sample(x, 40, seed)[1])
        torch.testing.assert_close(out, _cuda_restore(want_xr, want_idx, cache, (10, 10), (15, 20), "bilinear"))
        seen.append(idx.clone())
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


def test_opcheck_private_ops():
    utils = ("test_schema", "test_faketensor")
    x = torch.randn(2, 30, 8, device=DEV).transpose(1, 2).contiguous().transpose(1, 2)
    torch.library.opcheck(torch.ops.stagevar._project_and_sample_cuda.default, (x, 5, 3, None), test_utils=utils)
    seed_tensor = torch.tensor([3], dtype=torch.int64, device=DEV)
    torch.library.opcheck(torch.ops.stagevar._project_and_sample_cuda.default, (x, 5, 0, seed_tensor), test_utils=utils)
    y = torch.randn(2, 5, 8, device=DEV)
    idx = torch.stack([torch.randperm(12)[:5] for _ in range(2)]).to(DEV)
    cache = torch.randn(2, 6, 8, device=DEV)
    torch.library.opcheck(
        torch.ops.stagevar._restore_merge_cuda.default, (y, idx, cache, [2, 3], [3, 4], "bicubic"), test_utils=utils
    )
