"""Tiers 3 and 5: the Triton ``project_and_sample`` kernels against the reference.

On CPU the kernels run under ``TRITON_INTERPRET=1`` (set by ``tests/conftest.py``; small shapes, the interpreter
costs ~0.6 ms per program instance); on CUDA the same tests run the compiled kernels. Reference first, then the
kernel: ``idx`` must be identical and ``xr`` within ``testing.tolerance(dtype)``.
"""

import pytest
import torch

pytest.importorskip("triton")

from stagevar_kernels import ops, philox, reference  # noqa: E402
from stagevar_kernels.testing import (  # noqa: E402
    run_compiled_triton_script,
    strided_like,
    tolerance,
    triton_nvidia_backend_available,
)


@pytest.fixture
def device(triton_device):  # CPU through the interpreter, CUDA compiled (tests/stagevar_kernels/conftest.py)
    return triton_device


def _launch(x, rank, seed):
    from stagevar_kernels.triton.project_and_sample import project_and_sample

    return project_and_sample(x, rank, seed)


def _check(x, rank, seed):
    """Reference first, then the kernel: identical idx, xr within the dtype's tolerance."""
    xr_ref, idx_ref = reference.project_and_sample(x, rank, seed)
    xr, idx = _launch(x, rank, seed)
    assert xr.shape == xr_ref.shape and xr.dtype == x.dtype and xr.is_contiguous()
    assert idx.dtype == torch.int64 and idx.device == x.device
    assert torch.equal(idx, idx_ref)
    torch.testing.assert_close(xr.float(), xr_ref.float(), **tolerance(x.dtype))
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
    xr_ref, idx_ref = reference.project_and_sample(x, rank, seed=5)
    xr, idx = _launch(x, rank, seed=5)
    assert torch.equal(idx, idx_ref)
    want = sorted(good + bad[:2])  # every finite positive row, then the lowest-index bad rows
    assert idx.tolist() == [want, want]
    torch.testing.assert_close(xr, xr_ref, equal_nan=True, **tolerance(torch.float32))


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
    torch.testing.assert_close(xr.float(), xr_ref.float(), **tolerance(dtype))


@pytest.mark.parametrize("shape", [(), (1,)])
def test_device_seed_gives_the_int_seed_result(device, shape):
    x = torch.randn(2, 37, 33, device=device)
    seed_t = torch.full(shape, 2**40 + 77, dtype=torch.int64, device=device)
    xr_ref, idx_ref = reference.project_and_sample(x, 5, 2**40 + 77)
    xr, idx = _launch(x, 5, seed_t)
    assert torch.equal(idx, idx_ref)
    torch.testing.assert_close(xr, xr_ref, **tolerance(torch.float32))
    assert torch.equal(xr, _launch(x, 5, 2**40 + 77)[0])  # same kernels, the seed only read from memory
    seed_t.fill_(3)  # rewritten in place: the next call draws the numbers of seed 3
    assert torch.equal(_launch(x, 5, seed_t)[1], reference.project_and_sample(x, 5, 3)[1])


def test_deterministic(device):
    x = torch.randn(2, 61, 33, device=device, dtype=torch.float16)
    xr1, idx1 = _launch(x, 9, seed=8)
    xr2, idx2 = _launch(x, 9, seed=8)
    assert torch.equal(idx1, idx2) and torch.equal(xr1, xr2)


# Tier 4 for the Triton kernels: without a GPU, compile them for sm_90 (H100) in a subprocess (the interpreter
# switch is read at import, so the kernels must be imported there without TRITON_INTERPRET). This catches what the
# interpreter cannot: tl.dot shape/dtype rules, lowering and ptxas errors, constexpr-1 specialisations.
_AOT_SCRIPT = r"""
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from stagevar_kernels.triton import project_and_sample as mod

assert not mod._INTERPRET
target = GPUTarget("cuda", 90, 32)
ints = ["M", "D", "R", "stride_xb", "stride_xm", "stride_xd"]
variants = [("bf16", "tf32", "i32"), ("fp16", "tf32", "i64"), ("fp32", "ieee", "i32"), ("bf16", "tf32", 1)]
for dtype, precision, int_type in variants:
    block_m, block_r, block_d, num_warps = mod._block_sizes(4096, 721, 2048, dtype == "fp32")
    consts = {"BLOCK_M": block_m, "BLOCK_R": block_r, "BLOCK_D": block_d, "INTERPRET": False}
    sig = {"x_ptr": "*" + dtype, "xr_ptr": "*" + dtype, "norm_part_ptr": "*fp32", "seed": "i64", "seed_ptr": "*i64",
           "scale": "fp32"}
    extra = {}
    for name in ints + ["seed"] * (int_type == 1):
        if int_type == 1:  # Triton specialises integer arguments equal to 1 into constants
            sig[name], extra[name] = "constexpr", 1
        else:
            sig[name] = int_type
    for name in list(consts) + ["DOT_PRECISION", "SEED_FROM_PTR"]:
        sig[name] = "constexpr"
    src = ASTSource(fn=mod._project_and_sample_kernel, signature=sig,
                    constexprs={**consts, "DOT_PRECISION": precision, "SEED_FROM_PTR": int_type == "i64", **extra})
    kernel = triton.compile(src, target=target, options={"num_warps": num_warps})
    assert kernel.asm["cubin"], dtype
    assert "mma.sync" in kernel.asm["ptx"] or dtype == "fp32", "the projection must run on the tensor cores"
sig = {"norm_part_ptr": "*fp32", "codes_ptr": "*i64", "seed": "i64", "seed_ptr": "*i64", "M": "i32",
       "NUM_D_TILES": "i32", "BLOCK": "constexpr", "SEED_FROM_PTR": "constexpr"}
for from_ptr in (False, True):
    consts = {"BLOCK": 1024, "SEED_FROM_PTR": from_ptr}
    triton.compile(ASTSource(fn=mod._sampling_codes_kernel, signature=sig, constexprs=consts), target=target)
print("compiled")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the tests above run the compiled kernels")
@pytest.mark.skipif(not triton_nvidia_backend_available(), reason="Triton's NVIDIA backend (ptxas) is not installed")
def test_kernels_compile_for_sm90():
    done = run_compiled_triton_script(_AOT_SCRIPT)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-4000:]
