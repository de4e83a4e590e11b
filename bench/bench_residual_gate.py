"""Microbenchmark of ``residual_gate`` at Infinity-2B's block shapes (timing and columns: ``conftest.py``).

Implementations: ``eager`` (the block's inline torch code, ``block.reference.residual_gate`` called directly: the
gate product, its cast to the branch dtype, the add: three kernels on a GPU) and every block backend available on
the device through the registered op, on a GPU also replayed from a CUDA graph. The case is Infinity's
self-attention add ``x + sa_out.mul_(g1)`` (fp32 stream, bf16 branch). Bytes: ``x`` and ``y`` read, the gate read,
the output written once.
"""

import pytest
import torch
from baselines import DEVICE, HAS_CUDA, cuda_graphed

from stagevar_kernels.backends import available_backends
from stagevar_kernels.block import BLOCK_BACKENDS, reference, residual_gate

BACKENDS = [name for name in available_backends(DEVICE) if name in BLOCK_BACKENDS]
IMPLS = ["eager"] + [f"backend-{name}" for name in BACKENDS] + [f"backend-{n}-graph" for n in BACKENDS if HAS_CUDA]
# (name, R, L, C, y dtype)
if HAS_CUDA:
    CASES = [(f"inf2b-L{L}", 2, L, 2048, torch.bfloat16) for L in (1600, 4096)]
else:  # smoke shapes
    CASES = [("smoke", 2, 9, 37, torch.float32)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("impl", IMPLS)
def test_residual_gate(measure, case, impl):
    _, R, L, C, y_dtype = case
    x = torch.randn(R, L, C, device=DEVICE)
    y = torch.randn(R, L, C, device=DEVICE, dtype=y_dtype)
    g1 = torch.randn(R, 1, 6, C, device=DEVICE)[:, :, 0]
    nbytes = R * L * C * (4 + y.element_size() + 4) + R * C * 4
    if impl == "eager":
        fn = lambda: reference.residual_gate(x, y, g1, 1.0, True)
    else:
        name = impl.removeprefix("backend-").removesuffix("-graph")
        fn = lambda: residual_gate(x, y, g1, round_to_y=True, backend=name)
        if impl.endswith("-graph"):
            with torch.inference_mode():
                fn = cuda_graphed(fn)
    with torch.inference_mode():
        out = measure(fn, nbytes=nbytes, impl=impl, shape=(R, L, C), dtype=str(y_dtype))
        want = reference.residual_gate(x, y, g1, 1.0, True)
    torch.testing.assert_close(out, want, atol=0, rtol=0)  # sanity, not a test of speed
