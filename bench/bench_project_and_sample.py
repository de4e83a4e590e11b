"""Microbenchmark of ``project_and_sample`` at the paper's shapes (see ``conftest.py`` for shapes and timing).

Implementations: ``eager`` (``baselines.project_and_sample_eager``: ``torch.randn`` Q + ``bmm`` + norms + Gumbel
``topk`` + ``sort``, a different random stream: a speed yardstick), ``compile`` (``torch.compile`` of the same
function, the fair baseline) and every backend of ``stagevar_kernels.available_backends(device)`` called through the
registered op, with an int seed and (``-devseed``) with a device seed tensor. ``extra_info`` holds ``median_us``
(device time on CUDA), ``bytes`` (x read once, xr and idx written once), ``flops`` (``2 B r M D``) and the device's
``roofline_us`` beside them.
"""

import pytest
import torch
from baselines import DEVICE, HAS_CUDA, compiled, cuda_graphed, project_and_sample_eager

from stagevar_kernels import available_backends, ops

SEED = 2024
_BACKENDS = available_backends(DEVICE)
IMPLS = ["eager", "compile"] + [f"backend-{name}" for name in _BACKENDS]
IMPLS += [f"backend-{name}-devseed" for name in _BACKENDS if name != "reference"]
# On a GPU each backend also runs replayed from a CUDA graph (device seed: a replay draws new numbers): its cost
# without launch overhead.
IMPLS += [f"backend-{name}-graph" for name in _BACKENDS if HAS_CUDA]


@pytest.mark.parametrize("impl", IMPLS)
def test_project_and_sample(measure, project_case, impl):
    _, batch, rows, channels, rank, dtype = project_case
    x = torch.randn(batch, rows, channels, device=DEVICE, dtype=dtype)
    seed_t = torch.tensor(SEED, device=DEVICE)
    if impl == "eager":
        fn = lambda: project_and_sample_eager(x, rank)
    elif impl == "compile":
        torch._dynamo.reset()  # a fresh cache per case: the recompile limit would silently fall back to eager
        compiled_fn = compiled(project_and_sample_eager, DEVICE)
        fn = lambda: compiled_fn(x, rank)
    else:
        name = impl.removeprefix("backend-").removesuffix("-graph").removesuffix("-devseed")
        seed = SEED if impl == f"backend-{name}" else seed_t
        fn = lambda: ops.project_and_sample(x, rank, seed, backend=name)
        if impl.endswith("-graph"):
            with torch.inference_mode():
                fn = cuda_graphed(fn)
    nbytes = batch * (rows * channels + rank * channels) * x.element_size() + batch * rank * 8
    flops = 2 * batch * rank * rows * channels
    with torch.inference_mode():
        _, idx = measure(
            fn, nbytes=nbytes, flops=flops, dtype=dtype, impl=impl, shape=[batch, rows, channels], rank=rank
        )
        if impl.startswith("backend-"):  # sanity (not a test of speed): every backend draws the reference's rows
            _, idx_ref = ops.project_and_sample(x, rank, SEED, backend="reference")
            assert torch.equal(idx, idx_ref)
