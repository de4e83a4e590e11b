"""Microbenchmark of ``restore_merge`` at the paper's shapes (see ``conftest.py`` for shapes and timing).

Implementations: ``eager`` (``baselines.restore_merge_eager``: ``F.interpolate`` of the whole cache, then a scatter of
``y``), ``compile`` (``torch.compile`` of the same function) and every backend of
``stagevar_kernels.available_backends(device)`` called through the registered op. ``extra_info`` holds
``median_us`` (device time on CUDA), ``bytes``, ``gbps`` and the device's ``roofline_us`` (bytes / HBM bandwidth).
Bytes count each byte of the op's interface once: ``y``, ``idx`` and ``cache`` read, ``out`` written.
"""

import pytest
import torch
from baselines import DEVICE, HAS_CUDA, compiled, cuda_graphed, restore_merge_eager

from stagevar_kernels import available_backends, ops

# "copy" is the yardstick of the bandwidth targets: a device copy moving the same number of bytes.
IMPLS = ["copy", "eager", "compile"] + [f"backend-{name}" for name in available_backends(DEVICE)]
# On a GPU each backend also runs replayed from a CUDA graph: its cost without launch overhead.
IMPLS += [f"backend-{name}-graph" for name in available_backends(DEVICE) if HAS_CUDA]


@pytest.mark.parametrize("impl", IMPLS)
def test_restore_merge(measure, restore_case, impl):
    _, batch, rank, channels, src, dst, mode, dtype = restore_case
    rows = dst[0] * dst[1]
    y = torch.randn(batch, rank, channels, device=DEVICE, dtype=dtype)
    cache = torch.randn(batch, src[0] * src[1], channels, device=DEVICE, dtype=dtype)
    idx = torch.stack([torch.randperm(rows, device=DEVICE)[:rank].sort().values for _ in range(batch)])
    element = y.element_size()
    nbytes = batch * ((rank + src[0] * src[1] + rows) * channels * element + rank * 8)
    if impl == "copy":  # reads nbytes/2 and writes nbytes/2: the same traffic as the op
        source = torch.empty(nbytes // 2, dtype=torch.uint8, device=DEVICE)
        target = torch.empty_like(source)
        with torch.inference_mode():
            measure(
                lambda: target.copy_(source), nbytes=2 * (nbytes // 2), dtype=dtype, impl=impl, src_hw=src, dst_hw=dst
            )
        return
    if impl == "eager":
        fn = lambda: restore_merge_eager(y, idx, cache, src, dst, mode)
    elif impl == "compile":
        torch._dynamo.reset()  # a fresh cache per case: the recompile limit would silently fall back to eager
        compiled_fn = compiled(restore_merge_eager, DEVICE)
        fn = lambda: compiled_fn(y, idx, cache, src, dst, mode)
    else:
        name = impl.removeprefix("backend-").removesuffix("-graph")
        fn = lambda: ops.restore_merge(y, idx, cache, src, dst, mode, backend=name)
        if impl.endswith("-graph"):
            with torch.inference_mode():
                fn = cuda_graphed(fn)
    with torch.inference_mode():
        out = measure(fn, nbytes=nbytes, dtype=dtype, impl=impl, mode=mode, src_hw=src, dst_hw=dst, rank=rank)
        want = restore_merge_eager(y, idx, cache, src, dst, mode)
    # Sanity (not a test of speed); loose: the eager baseline interpolates in the benchmark dtype.
    torch.testing.assert_close(out.float(), want.float(), atol=5e-2, rtol=5e-2)
