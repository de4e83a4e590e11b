"""The Triton ``restore_merge`` kernels against the reference.

On CPU the kernels run under ``TRITON_INTERPRET=1`` (set by ``tests/conftest.py``); on CUDA the same tests run the
compiled kernels. Reference first, then the kernel, for all four modes, up- and downsampling, non-square grids,
strided inputs, duplicate and out-of-range indices.
"""

import pytest
import torch

pytest.importorskip("triton")

from stagevar_kernels import RESTORE_MODES, ops, reference  # noqa: E402
from stagevar_kernels.testing import (  # noqa: E402
    run_compiled_triton_script,
    strided_like,
    tolerance,
    triton_nvidia_backend_available,
)


@pytest.fixture
def device(triton_device):  # CPU through the interpreter, CUDA compiled (tests/stagevar_kernels/conftest.py)
    return triton_device


def _launch(y, idx, cache, src, dst, mode):
    from stagevar_kernels.triton.restore_merge import restore_merge

    return restore_merge(y, idx, cache, src, dst, mode)


def _random_idx(batch, rows, rank, device):
    return torch.stack([torch.randperm(rows)[:rank].sort().values for _ in range(batch)]).to(device)


# (src_hw, dst_hw): upsampling, downsampling (integer and not), identity, non-square, 1x1 source.
GRIDS = [
    ((3, 5), (7, 4)),
    ((4, 4), (8, 8)),
    ((8, 6), (5, 3)),
    ((6, 6), (3, 3)),
    ((5, 7), (5, 7)),
    ((1, 1), (3, 2)),
    ((4, 3), (9, 13)),
]


@pytest.mark.parametrize("src,dst", GRIDS)
@pytest.mark.parametrize("mode", RESTORE_MODES)
def test_matches_reference(device, mode, src, dst):
    batch, channels = 2, 19
    rows = dst[0] * dst[1]
    rank = max(1, rows // 5)
    y = torch.randn(batch, rank, channels, device=device)
    cache = torch.randn(batch, src[0] * src[1], channels, device=device)
    idx = _random_idx(batch, rows, rank, device)
    want = reference.restore_merge(y, idx, cache, src, dst, mode)
    got = _launch(y, idx, cache, src, dst, mode)
    assert got.shape == want.shape and got.dtype == y.dtype and got.is_contiguous()
    torch.testing.assert_close(got, want, **tolerance(torch.float32))


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", RESTORE_MODES)
def test_dtypes_and_layouts(device, mode, dtype, layout):
    src, dst, batch, channels, rank = (4, 5), (6, 7), 2, 33, 9
    y = strided_like(torch.randn(batch, rank, channels, device=device).to(dtype), layout)
    cache = strided_like(torch.randn(batch, src[0] * src[1], channels, device=device).to(dtype), layout)
    idx = _random_idx(batch, dst[0] * dst[1], rank, device)
    want = reference.restore_merge(y, idx, cache, src, dst, mode)
    got = _launch(y, idx, cache, src, dst, mode)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), **tolerance(dtype))


@pytest.mark.parametrize("channels", [1, 160])
def test_channel_edges(device, channels):
    # D=1 (one masked lane tile) and D > BLOCK_D (several channel tiles).
    src, dst = (3, 3), (5, 4)
    y = torch.randn(1, 4, channels, device=device)
    cache = torch.randn(1, 9, channels, device=device)
    idx = torch.tensor([[0, 6, 7, 19]], device=device)
    want = reference.restore_merge(y, idx, cache, src, dst, "bicubic")
    torch.testing.assert_close(_launch(y, idx, cache, src, dst, "bicubic"), want, **tolerance(torch.float32))


@pytest.mark.parametrize("mode", RESTORE_MODES)
def test_out_of_range_ignored_and_duplicates_resolve_to_the_largest_j(device, mode):
    src, dst, channels = (3, 4), (5, 6), 19
    rows = dst[0] * dst[1]
    y = torch.randn(1, 7, channels, device=device)
    cache = torch.randn(1, 12, channels, device=device)
    idx = torch.tensor([[2, 2, -1, rows, 9, 2**40, 9]], device=device)
    got = _launch(y, idx, cache, src, dst, mode)
    up = reference.upsample_rows(cache, src, dst, mode)
    plain = [p for p in range(rows) if p not in (2, 9)]
    torch.testing.assert_close(got[0, plain], up[0, plain], **tolerance(torch.float32))
    assert torch.equal(got[0, 2], y[0, 1]) and torch.equal(got[0, 9], y[0, 6])  # the largest j wins
    torch.testing.assert_close(got, reference.restore_merge(y, idx, cache, src, dst, mode), **tolerance(torch.float32))


def test_no_selected_rows_is_pure_upsampling(device):
    src, dst = (4, 6), (7, 5)
    cache = torch.randn(2, 24, 19, device=device)
    y = torch.randn(2, 3, 19, device=device)
    idx = torch.full((2, 3), -5, device=device)
    got = _launch(y, idx, cache, src, dst, "bilinear")
    torch.testing.assert_close(got, reference.upsample_rows(cache, src, dst, "bilinear"), **tolerance(torch.float32))


def test_strided_idx(device):
    src, dst = (3, 3), (4, 4)
    y = torch.randn(1, 3, 8, device=device)
    cache = torch.randn(1, 9, 8, device=device)
    idx = torch.tensor([[1, 99, 5, 99, 14, 99]], device=device)[:, ::2]
    want = reference.restore_merge(y, idx, cache, src, dst, "nearest")
    torch.testing.assert_close(_launch(y, idx, cache, src, dst, "nearest"), want, **tolerance(torch.float32))


@pytest.mark.parametrize("mode", RESTORE_MODES)
def test_unsorted_idx_gives_the_reference_output(device, mode):
    # No backend relies on idx being sorted: a permuted idx (with y permuted alike) gives the same output.
    src, dst, channels = (4, 4), (6, 5), 19
    y = torch.randn(2, 8, channels, device=device)
    cache = torch.randn(2, 16, channels, device=device)
    idx = _random_idx(2, 30, 8, device)
    perm = torch.randperm(8, device=device)
    want = reference.restore_merge(y, idx, cache, src, dst, mode)
    got = _launch(y[:, perm], idx[:, perm], cache, src, dst, mode)
    torch.testing.assert_close(got, want, **tolerance(torch.float32))


@pytest.mark.parametrize("channels", [300, 2048])
def test_channel_spans_and_many_rows(device, channels):
    # Several BLOCK_D chunks per program and more idx entries than one BLOCK_J scan step.
    src, dst = (6, 6), (16, 16)
    y = torch.randn(1, 200, channels, device=device, dtype=torch.bfloat16)
    cache = torch.randn(1, 36, channels, device=device, dtype=torch.bfloat16)
    idx = _random_idx(1, 256, 200, device)
    want = reference.restore_merge(y, idx, cache, src, dst, "area")
    torch.testing.assert_close(
        _launch(y, idx, cache, src, dst, "area").float(), want.float(), **tolerance(torch.bfloat16)
    )


@pytest.mark.parametrize("mode", ["area", "bicubic"])
def test_registered_op_with_triton_backend(device, mode):
    src, dst = (4, 4), (6, 5)
    y = strided_like(torch.randn(2, 6, 19, device=device, dtype=torch.bfloat16), "sliced")
    cache = torch.randn(2, 16, 19, device=device, dtype=torch.bfloat16)
    idx = _random_idx(2, 30, 6, device)
    want = reference.restore_merge(y, idx, cache, src, dst, mode)
    got = ops.restore_merge(y, idx, cache, src, dst, mode, backend="triton")
    torch.testing.assert_close(got.float(), want.float(), **tolerance(torch.bfloat16))


# Without a GPU, compile the Triton kernels for sm_90 (H100) in a subprocess (the interpreter
# switch is read at import, so the kernels must be imported there without TRITON_INTERPRET). This catches what the
# interpreter cannot: lowering and ptxas errors, 64-bit and constexpr-1 integer specialisations.
_AOT_SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from stagevar_kernels.triton import restore_merge as mod

assert not mod.INTERPRETING
target = GPUTarget("cuda", 90, 32)
ints = ["HW", "D", "H0", "W0", "H", "W", "win_h", "win_w", "stride_yb", "stride_yr", "stride_yd", "stride_cb",
        "stride_cm", "stride_cd"]
ints = ["R", "D_SPAN", "stride_ib", "stride_ij"] + ints
for mode_name, mode in mod._MODES.items():
    block_p, block_d, block_j, num_warps = mod._block_sizes(4096, 2048, mode_name)
    for dtype, int_type in [("bf16", "i32"), ("fp16", "i64"), ("fp32", 1)]:
        sig = {"y_ptr": "*" + dtype, "idx_ptr": "*i64", "cache_ptr": "*" + dtype, "out_ptr": "*" + dtype,
               "scale_h": "fp32", "scale_w": "fp32"}
        consts = {"MODE": mode, "SAME_H": int_type == 1, "SAME_W": False, "BLOCK_P": block_p, "BLOCK_D": block_d,
                  "BLOCK_J": block_j, "INTERPRET": False}
        for name in ints:
            if int_type == 1:  # Triton specialises integer arguments equal to 1 into constants
                sig[name], consts[name] = "constexpr", 1
            else:
                sig[name] = int_type
        for name in ["MODE", "SAME_H", "SAME_W", "BLOCK_P", "BLOCK_D", "BLOCK_J", "INTERPRET"]:
            sig[name] = "constexpr"
        src = ASTSource(fn=mod._restore_merge_kernel, signature=sig, constexprs=consts)
        kernel = triton.compile(src, target=target, options={"num_warps": num_warps})
        assert kernel.asm["cubin"], (mode_name, dtype)
print("compiled")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the tests above run the compiled kernels")
@pytest.mark.skipif(not triton_nvidia_backend_available(), reason="Triton's NVIDIA backend (ptxas) is not installed")
def test_kernels_compile_for_sm90():
    done = run_compiled_triton_script(_AOT_SCRIPT)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-4000:]
