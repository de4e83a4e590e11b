"""Microbenchmark of ``project_and_sample`` at the paper's shapes (see ``conftest.py`` for shapes and timing).

Implementations: ``eager`` (``baselines.project_and_sample_eager``: materialised ``Q`` + ``bmm`` + norms +
Gumbel top-k, ``Q`` generated inside the timed call), ``compile`` (``torch.compile`` of the same function) and every
backend of ``stagevar_kernels.available_backends(device)`` called through the registered op. ``extra_info`` holds
``median_us`` (device time on CUDA) and ``bytes`` (x read once, xr and idx written once).
"""

import pytest
import torch
from baselines import DEVICE, DTYPE, HAS_CUDA, compiled, cuda_graphed, project_and_sample_eager

from stagevar_kernels import available_backends, ops

SEED = 2024
IMPLS = ["eager", "compile"] + [f"backend-{name}" for name in available_backends(DEVICE)]
# On a GPU each backend also runs replayed from a CUDA graph: its cost without launch overhead.
IMPLS += [f"backend-{name}-graph" for name in available_backends(DEVICE) if HAS_CUDA]


@pytest.mark.parametrize("impl", IMPLS)
def test_project_and_sample(measure, project_case, impl):
    _, batch, rows, channels, rank = project_case
    x = torch.randn(batch, rows, channels, device=DEVICE, dtype=DTYPE)
    if impl == "eager":
        fn = lambda: project_and_sample_eager(x, rank, SEED)
    elif impl == "compile":
        torch._dynamo.reset()  # a fresh cache per case: the recompile limit would silently fall back to eager
        compiled_fn = compiled(project_and_sample_eager, DEVICE)
        fn = lambda: compiled_fn(x, rank, SEED)
    else:
        name = impl.removeprefix("backend-").removesuffix("-graph")
        fn = lambda: ops.project_and_sample(x, rank, SEED, backend=name)
        if impl.endswith("-graph"):
            with torch.inference_mode():
                fn = cuda_graphed(fn)
    element = x.element_size()
    nbytes = batch * (rows * channels + rank * channels) * element + batch * rank * 8
    with torch.inference_mode():
        _, idx = measure(fn, nbytes=nbytes, impl=impl, dtype=str(DTYPE), shape=[batch, rows, channels], rank=rank)
        # Sanity (not a test of speed): every implementation draws the same rows.
        _, idx_ref = project_and_sample_eager(x, rank, SEED)
    assert torch.equal(idx, idx_ref)
