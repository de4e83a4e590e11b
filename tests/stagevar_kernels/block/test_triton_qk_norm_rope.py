"""The Triton ``qk_norm_rope`` kernel against the reference, to the tolerances of ``block.testing.TOLERANCES``:
q, the k written into the cache views (nothing else of the cache touched) and v (copied exactly).

CPU runs it under ``TRITON_INTERPRET=1`` (``tests/conftest.py``), CUDA compiled."""

import pytest
import torch

pytest.importorskip("triton")

from stagevar_kernels.block import qk_norm_rope, reference  # noqa: E402
from stagevar_kernels.block.testing import assert_close_to_reference, cache_views  # noqa: E402
from stagevar_kernels.testing import strided_like  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# fp16 with rope_first rounds eps = 1e-12 to 0 like torch, so masked-off lanes divide 0 by 0 (never stored).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
# (R, H, L, c): odd head counts and lengths, a head dim whose pair count is not a power of two, one token.
SHAPES = [(2, 3, 3, 12), (1, 1, 1, 2), (2, 2, 3, 64), (1, 4, 2, 6)]


@pytest.fixture
def device(triton_device):
    return triton_device


def _case(R, H, L, c, dtype, device, rope, layout="rhlc", qkv_layout="contiguous"):
    qkv = strided_like((torch.randn(R, L, 3 * H * c) * 2).to(dtype).to(device), qkv_layout)
    scale_mul = (torch.rand(1, H, 1, 1) * 3 + 1).to(device)
    if rope == "shared":
        ang = torch.rand(L, c // 2, device=device) * 6
    elif rope == "per_row":
        ang = torch.rand(R, L, c // 2, device=device) * 6
    else:
        ang = None
    cos, sin = (None, None) if ang is None else (ang.cos(), ang.sin())
    return qkv, scale_mul, cos, sin, layout


def _check(qkv, scale_mul, cos, sin, layout, rope_first):
    R, L, C3 = qkv.shape
    H = scale_mul.numel()
    c = C3 // (3 * H)
    k_ref, v_ref, _ = cache_views(R, H, L, c, qkv.dtype, qkv.device)
    q_ref = reference.qk_norm_rope(qkv, scale_mul, cos, sin, k_ref, v_ref, rope_first, 1e-12)
    k_out, v_out, buf = cache_views(R, H, L, c, qkv.dtype, qkv.device, layout)
    q = qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first=rope_first, backend="triton")
    assert q.dtype == qkv.dtype and q.shape == (R, H, L, c) and q.is_contiguous()
    assert_close_to_reference("qk_norm_rope", q, q_ref)
    assert_close_to_reference("qk_norm_rope", k_out, k_ref)
    assert torch.equal(v_out, v_ref)
    written = torch.zeros(buf.shape, dtype=torch.bool, device=buf.device)
    for view in (k_out, v_out):
        torch.as_strided(written, view.shape, view.stride(), view.storage_offset()).fill_(True)
    assert buf[~written].isnan().all(), "the kernel wrote outside k_out/v_out"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rope_first", [False, True])
def test_matches_reference(device, shape, dtype, rope_first):
    _check(*_case(*shape, dtype, device, "per_row"), rope_first)


@pytest.mark.parametrize("rope", ["shared", "none"])
@pytest.mark.parametrize("rope_first", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_tables(device, rope, rope_first, dtype):
    _check(*_case(2, 3, 3, 12, dtype, device, rope), rope_first)


@pytest.mark.parametrize("qkv_layout", ["permuted", "sliced"])
@pytest.mark.parametrize("rope_first", [False, True])
def test_strided(device, qkv_layout, rope_first):
    qkv, scale_mul, cos, sin, _ = _case(2, 3, 3, 12, torch.bfloat16, device, "per_row", qkv_layout=qkv_layout)
    cos = cos.transpose(0, 1).contiguous().transpose(0, 1)
    _check(qkv, scale_mul.flatten(), cos, sin, "rlhc", rope_first)


def test_zero_head_is_zero(device):
    # F.normalize of a zero vector is zero (0 / eps), not NaN.
    qkv, scale_mul, cos, sin, layout = _case(1, 2, 3, 4, torch.float32, device, "shared")
    qkv[:, :, :4] = 0
    qkv[:, :, 8:12] = 0
    _check(qkv, scale_mul, cos, sin, layout, False)
    _check(qkv, scale_mul, cos, sin, layout, True)


def _star_under_cuda_autocast(qkv, scale_mul, cos, sin):
    """STAR's order with the norm in float32 and one rounding at the end (``F.normalize`` under CUDA autocast)."""
    q, k, _ = reference.split_heads(qkv, scale_mul.numel())
    c, s = reference.rope_tables(cos, sin)
    dt = qkv.dtype
    q, k = reference.rotate_pairs(q, c, s).to(dt).float(), reference.rotate_pairs(k, c, s).to(dt).float()
    q = (q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)).mul(scale_mul.reshape(1, -1, 1, 1)).to(dt)
    k = (k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)).to(dt)
    return q, k


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_star_norm_in_float32_without_intermediate_rounding(device, dtype, monkeypatch):
    # The kernel's ROUND_NORM=False path, which CUDA autocast selects, on any device.
    from stagevar_kernels.block.triton import qk_norm_rope as mod

    monkeypatch.setattr(mod, "_round_norm", lambda qkv: False)
    qkv, scale_mul, cos, sin, _ = _case(2, 3, 3, 12, dtype, device, "per_row")
    q_want, k_want = _star_under_cuda_autocast(qkv, scale_mul, cos, sin)
    k_out, v_out, _ = cache_views(2, 3, 3, 12, dtype, device)
    q = qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first=True, backend="triton")
    assert_close_to_reference("qk_norm_rope", q, q_want)
    assert_close_to_reference("qk_norm_rope", k_out, k_want)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA autocast needs a CUDA device")
@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_star_under_cuda_autocast(backend):
    # Inside the op, F.normalize follows the caller's autocast like the inline STAR code: float32 norm, one rounding.
    qkv, scale_mul, cos, sin, _ = _case(2, 3, 3, 12, torch.float16, "cuda", "per_row")
    with torch.autocast("cuda", dtype=torch.float16):
        k_out, v_out, _ = cache_views(2, 3, 3, 12, torch.float16, "cuda")
        q = qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first=True, backend=backend)
    q_want, k_want = _star_under_cuda_autocast(qkv, scale_mul, cos, sin)
    assert_close_to_reference("qk_norm_rope", q, q_want)
    assert_close_to_reference("qk_norm_rope", k_out, k_want)
