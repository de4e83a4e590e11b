"""Backend choice of the block ops, and empty inputs on every backend."""

import pytest
import torch

from stagevar_kernels.backends import available_backends
from stagevar_kernels.block import bit_pair_probs, norm_modulate, qk_norm_rope, residual_gate
from stagevar_kernels.block.ops import resolve_backend

BACKENDS = [name for name in available_backends("cpu") if name in ("reference", "triton")]


def test_default_is_the_reference_on_cpu():
    assert resolve_backend(None, torch.device("cpu")) == "reference"


def test_named_backends():
    cpu = torch.device("cpu")
    assert resolve_backend("reference", cpu) == "reference"
    with pytest.raises(ValueError, match="^backend: expected one of"):
        resolve_backend("cuda", cpu)  # the block ops have no CUDA C++ kernels
    if "triton" in available_backends(cpu):  # CPU tensors run Triton only under the interpreter
        assert resolve_backend("triton", cpu) == "triton"
    else:
        with pytest.raises(ValueError, match="^backend: 'triton' is not available"):
            resolve_backend("triton", cpu)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("R,L", [(0, 3), (2, 0)])
def test_empty_inputs(backend, R, L):
    C, H, c = 8, 2, 4
    x = torch.randn(R, L, C)
    assert norm_modulate(x, eps=1e-6, out_dtype=torch.bfloat16, backend=backend).shape == (R, L, C)
    assert residual_gate(x, x, torch.randn(R, 1, C), backend=backend).shape == (R, L, C)
    k_out, v_out = torch.empty(R, H, L, c), torch.empty(R, H, L, c)
    cos = sin = torch.randn(L, c // 2)
    q = qk_norm_rope(torch.randn(R, L, 3 * C), torch.ones(H), cos, sin, k_out, v_out, rope_first=False, backend=backend)
    assert q.shape == (R, H, L, c)
    assert bit_pair_probs(torch.randn(R, L, 6), top_k=1, top_p=0.9, backend=backend).shape == (0, 2)
