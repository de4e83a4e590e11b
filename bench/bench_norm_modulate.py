"""Microbenchmark of ``norm_modulate`` at Infinity-2B's block shapes (timing and columns: ``conftest.py``).

Implementations: ``eager`` (the block's inline torch code, ``block.reference.norm_modulate`` called directly: LayerNorm,
``mul(1 + scale)``, ``add_(shift)``, cast: five kernels on a GPU) and every block backend available on the device
through the registered op, on a GPU also replayed from a CUDA graph. Bytes: ``x`` read, ``scale``/``shift`` read,
the output written once.
"""

import pytest
import torch
from baselines import DEVICE, HAS_CUDA, cuda_graphed

from stagevar_kernels.backends import available_backends
from stagevar_kernels.block import BLOCK_BACKENDS, norm_modulate, reference

BACKENDS = [name for name in available_backends(DEVICE) if name in BLOCK_BACKENDS]
IMPLS = ["eager"] + [f"backend-{name}" for name in BACKENDS] + [f"backend-{n}-graph" for n in BACKENDS if HAS_CUDA]
# (name, R, L, C, x dtype, out dtype): the AdaLN before the self-attention of Infinity-2B at 40x40 and 64x64 (the
# fp32 residual stream in, the bf16 linear input out).
if HAS_CUDA:
    CASES = [(f"inf2b-L{L}", 2, L, 2048, torch.float32, torch.bfloat16) for L in (1600, 4096)]
else:  # smoke shapes
    CASES = [("smoke", 2, 9, 37, torch.float32, torch.float32)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("impl", IMPLS)
def test_norm_modulate(measure, case, impl):
    _, R, L, C, x_dtype, out_dtype = case
    x = torch.randn(R, L, C, device=DEVICE, dtype=x_dtype)
    gss = torch.randn(R, 1, 6, C, device=DEVICE) * 0.3
    scale, shift = gss[:, :, 2], gss[:, :, 4]
    nbytes = R * L * C * (x.element_size() + torch.empty((), dtype=out_dtype).element_size()) + 2 * R * C * 4
    if impl == "eager":
        fn = lambda: reference.norm_modulate(x, None, None, scale, shift, 1e-6, out_dtype)
    else:
        name = impl.removeprefix("backend-").removesuffix("-graph")
        fn = lambda: norm_modulate(x, scale=scale, shift=shift, eps=1e-6, out_dtype=out_dtype, backend=name)
        if impl.endswith("-graph"):
            with torch.inference_mode():
                fn = cuda_graphed(fn)
    with torch.inference_mode():
        out = measure(fn, nbytes=nbytes, impl=impl, shape=(R, L, C), dtype=f"{x_dtype}->{out_dtype}")
        want = reference.norm_modulate(x, None, None, scale, shift, 1e-6, out_dtype)
    torch.testing.assert_close(out.float(), want.float(), atol=2e-2, rtol=2e-2)  # sanity, not a test of speed
