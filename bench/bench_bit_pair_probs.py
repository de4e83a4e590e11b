"""Microbenchmark of ``bit_pair_probs`` at Infinity-2B's sampling shapes (timing and columns: ``conftest.py``).

Implementations: ``eager`` (the sampler's inline torch code, ``block.reference.bit_pair_probs`` called directly:
``topk``, ``masked_fill``, ``sort``, ``softmax``, ``cumsum``, ``scatter``, a second ``masked_fill`` and the final
``softmax``) and every block backend available on the device through the registered op, on a GPU also replayed from
a CUDA graph. Bytes: the logits read, the probabilities written.
"""

import pytest
import torch
from baselines import DEVICE, HAS_CUDA, cuda_graphed

from stagevar_kernels.backends import available_backends
from stagevar_kernels.block import BLOCK_BACKENDS, bit_pair_probs, reference

BACKENDS = [name for name in available_backends(DEVICE) if name in BLOCK_BACKENDS]
IMPLS = ["eager"] + [f"backend-{name}" for name in BACKENDS] + [f"backend-{n}-graph" for n in BACKENDS if HAS_CUDA]
# (name, B, L, d, top_k, top_p): Infinity-2B's 32 bits per token at 40x40 and 64x64, with the upstream defaults'
# top-k 900 (keeps both entries) and top-p 0.97, and with top-k 1.
if HAS_CUDA:
    CASES = [(f"inf2b-L{L}-k{k}", 2, L, 32, k, 0.97) for L in (1600, 4096) for k in (900, 1)]
else:  # smoke shapes
    CASES = [("smoke", 2, 9, 5, 900, 0.97), ("smoke-k1", 1, 7, 3, 1, 0.9)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("impl", IMPLS)
def test_bit_pair_probs(measure, case, impl):
    _, B, L, d, top_k, top_p = case
    logits = torch.randn(B, L, 2 * d, device=DEVICE) * 3
    nbytes = 2 * logits.numel() * 4
    if impl == "eager":
        fn = lambda: reference.bit_pair_probs(logits, top_k, top_p)
    else:
        name = impl.removeprefix("backend-").removesuffix("-graph")
        fn = lambda: bit_pair_probs(logits, top_k=top_k, top_p=top_p, backend=name)
        if impl.endswith("-graph"):
            with torch.inference_mode():
                fn = cuda_graphed(fn)
    with torch.inference_mode():
        out = measure(fn, nbytes=nbytes, impl=impl, shape=(B, L, 2 * d), top_k=top_k, top_p=top_p)
        want = reference.bit_pair_probs(logits, top_k, top_p)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)  # sanity, not a test of speed
