"""Microbenchmark of ``qk_norm_rope`` at Infinity-2B's attention shapes (timing and columns: ``conftest.py``).

Implementations: ``eager`` (the block's inline torch code, ``block.reference.qk_norm_rope`` called directly: split,
two ``F.normalize``, the scale, RoPE of q and k by ``stack``, two casts and the K/V cache copies) and every block
backend available on the device through the registered op, on a GPU also replayed from a CUDA graph. K/V are
written into views of a preallocated cache of 4096 positions. Bytes: ``qkv`` and the per-row RoPE tables read,
q, k and v written once.
"""

import pytest
import torch
from baselines import DEVICE, HAS_CUDA, cuda_graphed

from stagevar_kernels.backends import available_backends
from stagevar_kernels.block import BLOCK_BACKENDS, qk_norm_rope, reference

BACKENDS = [name for name in available_backends(DEVICE) if name in BLOCK_BACKENDS]
IMPLS = ["eager"] + [f"backend-{name}" for name in BACKENDS] + [f"backend-{n}-graph" for n in BACKENDS if HAS_CUDA]
# (name, R, H, L, c, dtype, rope_first): Infinity-2B (16 heads of 128) in bf16 at 40x40 and 64x64; STAR's order.
if HAS_CUDA:
    CASES = [(f"inf2b-L{L}", 2, 16, L, 128, torch.bfloat16, False) for L in (1600, 4096)]
    CASES += [("star-L4096", 2, 16, 4096, 120, torch.float16, True)]
else:  # smoke shapes
    CASES = [("smoke", 2, 3, 5, 12, torch.float32, False), ("smoke-star", 1, 2, 4, 8, torch.float32, True)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("impl", IMPLS)
def test_qk_norm_rope(measure, case, impl):
    _, R, H, L, c, dtype, rope_first = case
    qkv = torch.randn(R, L, 3 * H * c, device=DEVICE, dtype=dtype)
    scale_mul = torch.rand(H, device=DEVICE) + 1
    ang = torch.rand(R, L, c // 2, device=DEVICE) * 6
    cos, sin = ang.cos(), ang.sin()
    cache = torch.empty(2, R, H, max(L, 4096), c, device=DEVICE, dtype=dtype)
    k_out, v_out = cache[0, :, :, :L], cache[1, :, :, :L]
    nbytes = 2 * qkv.numel() * qkv.element_size() + 2 * cos.numel() * 4
    if impl == "eager":
        fn = lambda: reference.qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first, 1e-12)
    else:
        name = impl.removeprefix("backend-").removesuffix("-graph")
        fn = lambda: qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first=rope_first, backend=name)
        if impl.endswith("-graph"):
            with torch.inference_mode():
                fn = cuda_graphed(fn)
    with torch.inference_mode():
        out = measure(fn, nbytes=nbytes, impl=impl, shape=(R, H, L, c), dtype=str(dtype), rope_first=rope_first)
        want = reference.qk_norm_rope(qkv, scale_mul, cos, sin, k_out.clone(), v_out.clone(), rope_first, 1e-12)
    torch.testing.assert_close(out.float(), want.float(), atol=2e-2, rtol=2e-2)  # sanity, not a test of speed
