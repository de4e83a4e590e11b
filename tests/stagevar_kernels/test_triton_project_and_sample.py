"""The Triton ``project_and_sample`` kernels against the reference.

On CPU the kernels run under ``TRITON_INTERPRET=1`` (set by ``tests/conftest.py``; small shapes, the interpreter
costs ~0.6 ms per program instance); on CUDA the same tests run the compiled kernels. Reference first, then the
kernel: ``idx`` must be identical and ``xr`` within ``testing.PROJECTION_TOLERANCE``.
"""

import pytest
import torch

pytest.importorskip("triton")

from stagevar_kernels import ops, philox, reference  # noqa: E402
from stagevar_kernels.testing import (  # noqa: E402
    assert_projection_close,
    run_compiled_triton_script,
    strided_like,
    triton_nvidia_backend_available,
)


@pytest.fixture
def device(triton_device):  # CPU through the interpreter, CUDA compiled (tests/stagevar_kernels/conftest.py)
    return triton_device


def _launch(x, rank, seed):
    from stagevar_kernels.triton.project_and_sample import project_and_sample

    return project_and_sample(x, rank, seed)


def _check(x, rank, seed):
    """Reference first, then the kernel: identical idx, xr within testing.PROJECTION_TOLERANCE."""
    xr_ref, idx_ref = reference.project_and_sample(x, rank, seed)
    xr, idx = _launch(x, rank, seed)
    assert xr.shape == xr_ref.shape and xr.dtype == x.dtype and xr.is_contiguous()
    assert idx.dtype == torch.int64 and idx.device == x.device
    assert torch.equal(idx, idx_ref)
    assert_projection_close(xr, x, rank, seed)
    return xr, idx


# Awkward sizes: M in {1, 7, 37, 61}, D in {1, 19, 33}, rank in {1, 3, 5, M}; B=2 checks the batch counter.
SHAPES = [
    (1, 1, 1, 1),
    (2, 7, 1, 3),
    (2, 7, 19, 7),
    (1, 37, 33, 5),
    (2, 37, 19, 1),
    (1, 61, 1, 61),
    (2, 61, 33, 3),
    (1, 61, 19, 37),
]


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch,rows,channels,rank", SHAPES)
def test_matches_reference(device, batch, rows, channels, rank, dtype, layout):
    x = strided_like(torch.randn(batch, rows, channels, device=device).to(dtype), layout)
    _check(x, rank, seed=1234)


@pytest.mark.parametrize("seed", [0, 1, 7, 2**31 + 3, 2**32 + 5, philox.MAX_SEED])
def test_seeds_across_the_key_words(device, seed):
    # Seeds above 2**32 reach the high key word; 0 and 1 hit Triton's integer specialisations.
    x = torch.randn(2, 37, 33, device=device)
    _check(x, 5, seed)


def test_large_tiles_several_blocks(device):
    # More rows than one BLOCK_M, more ranks than one BLOCK_R, more channels than one BLOCK_D.
    x = torch.randn(2, 150, 160, device=device)
    _check(x, 70, seed=99)


def test_zero_and_nonfinite_rows_are_drawn_last(device):
    x = torch.randn(2, 37, 19, device=device)
    bad = [0, 3, 10, 20, 36]
    x[:, 0] = 0.0
    x[:, 3, 4] = float("inf")
    x[:, 10, 7] = float("nan")
    x[:, 20] = 0.0
    x[:, 36, 1] = float("-inf")
    good = [i for i in range(37) if i not in bad]
    rank = len(good) + 2
    xr, idx = _check(x, rank, seed=5)  # inf/NaN entries of xr exactly where the reference has them
    want = sorted(good + bad[:2])  # every finite positive row, then the lowest-index bad rows
    assert idx.tolist() == [want, want]
    assert torch.isnan(xr).any() and torch.isinf(xr).any()


def test_rank_larger_than_nonzero_rows(device):
    x = torch.zeros(1, 7, 5, device=device)
    x[0, 4] = 1.0
    _check(x, 3, seed=3)  # row 4, then rows 0 and 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_registered_op_with_triton_backend(device, dtype):
    x = strided_like(torch.randn(2, 37, 19, device=device).to(dtype), "permuted")
    xr_ref, idx_ref = reference.project_and_sample(x, 5, 21)
    xr, idx = ops.project_and_sample(x, 5, 21, backend="triton")
    assert torch.equal(idx, idx_ref)
    assert_projection_close(xr, x, 5, 21)


@pytest.mark.parametrize("shape", [(), (1,)])
def test_device_seed_gives_the_int_seed_result(device, shape):
    x = torch.randn(2, 37, 33, device=device)
    seed_t = torch.full(shape, 2**40 + 77, dtype=torch.int64, device=device)
    idx_ref = reference.project_and_sample(x, 5, 2**40 + 77)[1]
    xr, idx = _launch(x, 5, seed_t)
    assert torch.equal(idx, idx_ref)
    assert_projection_close(xr, x, 5, 2**40 + 77)
    assert torch.equal(xr, _launch(x, 5, 2**40 + 77)[0])  # same kernels, the seed only read from memory
    seed_t.fill_(3)  # rewritten in place: the next call draws the numbers of seed 3
    assert torch.equal(_launch(x, 5, seed_t)[1], reference.project_and_sample(x, 5, 3)[1])


def test_deterministic(device):
    x = torch.randn(2, 61, 33, device=device, dtype=torch.float16)
    xr1, idx1 = _launch(x, 9, seed=8)
    xr2, idx2 = _launch(x, 9, seed=8)
    assert torch.equal(idx1, idx2) and torch.equal(xr1, xr2)


def _select(keys, rank, block=None):
    from stagevar_kernels.triton.project_and_sample import select_rows

    return select_rows(keys, rank, block)


@pytest.mark.parametrize("block", [None, 256])
@pytest.mark.parametrize("rows,rank", [(1, 1), (7, 3), (300, 53), (300, 300), (1000, 1), (1000, 999), (4100, 721)])
def test_selection_matches_reference(device, rows, rank, block):
    # block=256 forces several chunks per pass (the path of M > 4096) on small M.
    keys = torch.randn(3, rows, device=device) * 5
    assert torch.equal(_select(keys, rank, block), philox.select_rows(keys, rank))


@pytest.mark.parametrize("block", [None, 256])
def test_selection_ties_infinities_and_signed_zeros(device, block):
    # Ties across the boundary go to the lowest index; -inf rows (zero/non-finite norms) last; -0.0 below 0.0;
    # keys that share their top 8, 16 or 24 bits exercise every digit pass.
    rows = 700
    base = torch.tensor([1.0, 1.0000001, 1.0000002, -0.0, 0.0, 2.0, -3.5, float("inf"), float("-inf")])
    keys = base[torch.randint(0, len(base), (4, rows))].to(device)
    keys[1] = float("-inf")  # every row invalid: the lowest indices
    keys[2] = 0.0  # all zero keys tie
    for rank in (1, 2, 150, 699, rows):
        assert torch.equal(_select(keys, rank, block), philox.select_rows(keys, rank)), rank


def test_selection_all_rows_zero_through_the_op(device):
    x = torch.zeros(2, 37, 19, device=device)
    for rank in (1, 20, 37):
        _, idx = _launch(x, rank, seed=4)
        assert idx.tolist() == [list(range(rank))] * 2


def test_q_workspace_rounding_is_the_reference_q_rounded(device):
    # The projection GEMM's operand: the reference's float32 Q rounded once to x.dtype (bf16/fp16); float32 Q
    # for float32 x. Philox words are bit-identical; the normals can differ by an ulp or two of float32
    # (log/sin/cos implementations), which rounding to 8 or 11 mantissa bits almost always absorbs.
    from stagevar_kernels.triton import project_and_sample as mod

    rows, rank, channels = 61, 37, 19
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(2, rows, channels, device=device).to(dtype)
        q = torch.empty(2, rows, rank, dtype=dtype, device=device)
        keys = torch.empty(2, rows, dtype=torch.int32, device=device)
        block_m, block_g, block_d, warps = mod._prepare_blocks(rows, rank, channels)
        mod._prepare_kernel[(triton_cdiv(rows, block_m), 2)](
            x, q, keys, 9, keys, rows, channels, rank, *x.stride(), philox.projection_scale(rank),
            BLOCK_M=block_m, BLOCK_G=block_g, BLOCK_D=block_d, INTERPRET=mod.INTERPRETING, SEED_FROM_PTR=False,
            num_warps=warps,
        )  # fmt: skip
        want = philox.projection_matrix(9, 2, rows, rank, device=device)
        if dtype == torch.float32:
            torch.testing.assert_close(q, want, atol=0, rtol=4e-7)
        else:
            mismatch = (q != want.to(dtype)).float().mean().item()
            assert mismatch < 0.01, (dtype, mismatch)
            torch.testing.assert_close(q.float(), want, atol=0, rtol=2**-7 if dtype == torch.bfloat16 else 2**-10)


def triton_cdiv(a, b):
    return -(-a // b)


# Without a GPU, compile the Triton kernels for sm_90 (H100) in a subprocess (the interpreter
# switch is read at import, so the kernels must be imported there without TRITON_INTERPRET). This catches what the
# interpreter cannot: tl.dot shape/dtype rules, lowering and ptxas errors, constexpr-1 specialisations.
_AOT_SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from stagevar_kernels.triton import project_and_sample as mod

assert not mod.INTERPRETING
target = GPUTarget("cuda", 90, 32)
ints = ["M", "D", "R", "stride_xb", "stride_xm", "stride_xd"]
for dtype, int_type in [("bf16", "i32"), ("fp16", "i64"), ("fp32", "i32"), ("bf16", 1)]:
    def signature(consts):
        sig, extra = {}, {}
        for name in ints:
            if int_type == 1:  # Triton specialises integer arguments equal to 1 into constants
                sig[name], extra[name] = "constexpr", 1
            else:
                sig[name] = int_type
        for name in consts:
            sig[name] = "constexpr"
        return sig, {**consts, **extra}

    block_m, block_g, block_d, warps = mod._prepare_blocks(4096, 721, 2048)
    sig, consts = signature({"BLOCK_M": block_m, "BLOCK_G": block_g, "BLOCK_D": block_d, "INTERPRET": False,
                             "SEED_FROM_PTR": int_type == "i64"})
    sig.update({"x_ptr": "*" + dtype, "q_ptr": "*" + dtype, "keys_ptr": "*i32", "seed": "i64", "seed_ptr": "*i64",
                "scale": "fp32"})
    prep = triton.compile(ASTSource(fn=mod._prepare_kernel, signature=sig, constexprs=consts), target=target,
                          options={"num_warps": warps})
    block_r, block_dd, block_k, warps, stages = mod._project_blocks(721, 2048, dtype == "fp32")
    sig, consts = signature({"BLOCK_R": block_r, "BLOCK_D": block_dd, "BLOCK_M": block_k,
                             "SPLIT_TF32": dtype == "fp32", "INTERPRET": False})
    sig.update({"q_ptr": "*" + dtype, "x_ptr": "*" + dtype, "xr_ptr": "*" + dtype})
    proj = triton.compile(ASTSource(fn=mod._project_kernel, signature=sig, constexprs=consts), target=target,
                          options={"num_warps": warps, "num_stages": stages})
    assert prep.asm["cubin"] and proj.asm["cubin"], dtype
    # Tensor cores: mma.sync (sm_80 style) or wgmma (sm_90), TF32 operands for the float32 split.
    ptx = proj.asm["ptx"]
    assert "mma" in ptx, dtype
    assert (".tf32" in ptx) == (dtype == "fp32"), dtype
for block in (256, 4096):
    sig = {"keys_ptr": "*i32", "idx_ptr": "*i64", "M": "i32", "R": "i32", "BLOCK": "constexpr"}
    triton.compile(ASTSource(fn=mod._select_kernel, signature=sig, constexprs={"BLOCK": block}), target=target,
                   options={"num_warps": 8 if block >= 2048 else 4})
print("compiled")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the tests above run the compiled kernels")
@pytest.mark.skipif(not triton_nvidia_backend_available(), reason="Triton's NVIDIA backend (ptxas) is not installed")
def test_kernels_compile_for_sm90():
    done = run_compiled_triton_script(_AOT_SCRIPT)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-4000:]
