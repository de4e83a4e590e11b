"""The GPU's arithmetic, checked on CPU: the torch emulation of the projection kernels against the reference at the
paper's shapes, and the kernels (interpreter on CPU, compiled on CUDA) against that emulation.

The emulation (``testing.emulate_gpu_projection``) rounds exactly where the compiled kernels round: ``Q`` once to the
GEMM's operand dtype (half inputs) or the 3xTF32 split (float32 inputs), fp32 accumulation, one output rounding. The
interpreter branch of ``_project_kernel`` computes the same products (its dot operands are the same half or
TF32-exact values, multiplied in fp32), so a kernel-vs-emulation difference can only come from summation order.
"""

import pytest
import torch

from stagevar_kernels import philox, reference
from stagevar_kernels.testing import (
    PROJECTION_TOLERANCE,
    assert_projection_close,
    emulate_gpu_projection,
    projection_scale_of_error,
    round_tf32,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [40, 48, 64])
def test_emulated_gpu_projection_meets_the_contract_at_paper_shapes(hw, dtype):
    # Infinity-2B's unit inputs at the 40x40, 48x48 and 64x64 steps: B=1, D=2048, r = round(0.176 M).
    rows = hw * hw
    rank = round(0.176 * rows)
    x = torch.randn(1, rows, 2048).to(dtype)
    assert_projection_close(emulate_gpu_projection(x, rank, 31), x, rank, 31)


def test_tf32_rounding_is_nearest_ties_away():
    one_ulp = 2.0**-10
    v = torch.tensor(
        [
            1.0,
            1 + one_ulp / 2,
            1 + one_ulp / 2 - 2**-23,
            -(1 + one_ulp / 2),
            torch.finfo(torch.float32).max,
            float("inf"),
        ]
    )
    want = torch.tensor([1.0, 1 + one_ulp, 1.0, -(1 + one_ulp), float("inf"), float("inf")])
    assert torch.equal(round_tf32(v), want)
    assert torch.isnan(round_tf32(torch.tensor([float("nan")]))).all()


def test_3xtf32_split_keeps_float32_accuracy_and_non_finite_values():
    x = torch.randn(1, 300, 64)
    x[0, 3, 5] = float("inf")
    x[0, 7, 9] = float("-inf")
    x[0, 11, 2] = float("nan")
    emu = emulate_gpu_projection(x, 40, 8)
    want = reference.project_and_sample(x, 40, 8)[0]
    finite = torch.isfinite(want)
    assert torch.equal(torch.isinf(emu), torch.isinf(want)) and torch.equal(torch.isnan(emu), torch.isnan(want))
    assert torch.equal(emu[torch.isinf(want)], want[torch.isinf(want)])
    err = (emu - want).abs()[finite] / projection_scale_of_error(x, 40, 8)[finite]
    assert err.max() < PROJECTION_TOLERANCE[torch.float32]["k"]


@pytest.fixture
def device(triton_device):  # CPU through the interpreter, CUDA compiled (tests/stagevar_kernels/conftest.py)
    return triton_device


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,rows,channels,rank", [(1, 150, 160, 70), (2, 97, 33, 17)])
def test_triton_kernel_is_the_emulated_arithmetic(device, dtype, batch, rows, channels, rank):
    pytest.importorskip("triton")
    from stagevar_kernels.triton.project_and_sample import project_and_sample

    x = torch.randn(batch, rows, channels, device=device).to(dtype)
    xr, _ = project_and_sample(x, rank, 12)
    emu = emulate_gpu_projection(x, rank, 12)
    # Same roundings, different summation order (and normals within an ulp or two of fp32): far tighter than the
    # contract's bound, which the rounding of Q to a half dtype dominates.
    scale = projection_scale_of_error(x, rank, 12)
    u_out = PROJECTION_TOLERANCE[dtype]["u_out"]
    err = (xr.float() - emu.float()).abs()
    assert bool((err <= 2.0**-18 * scale + 2 * u_out * emu.float().abs()).all())
    # For half inputs the contract's error budget is Q's rounding; the emulation shows it is really spent.
    if dtype != torch.float32:
        ref = reference.project_and_sample(x, rank, 12)[0]
        assert (ref != xr).float().mean() > 0.05


def test_non_finite_inputs_give_the_reference_result_in_every_dtype(device):
    pytest.importorskip("triton")
    from stagevar_kernels.triton.project_and_sample import project_and_sample

    for dtype in DTYPES:
        x = torch.randn(2, 37, 19, device=device).to(dtype)
        x[0, 4, 3] = float("inf")
        x[1, 9, 0] = float("-inf")
        x[1, 20, 7] = float("nan")
        xr, idx = project_and_sample(x, 9, 5)
        assert torch.equal(idx, reference.project_and_sample(x, 9, 5)[1])
        assert_projection_close(xr, x, 9, 5)  # inf and NaN exactly where the reference has them


def test_reference_q_is_the_documented_stream():
    # The bit-level contract: Q from philox.standard_normals scaled by float32(1/sqrt(r)), nothing else.
    q = philox.projection_matrix(3, 1, 8, 5)
    assert torch.equal(q, philox.standard_normals(3, 1, 8, 5) * philox.projection_scale(5))
