"""Helpers for the tests of this package and of code built on it (no pytest dependency at import)."""

from __future__ import annotations

import contextlib

import torch

from . import philox, reference
from .backends import available_backends

HAS_CUDA = torch.cuda.is_available()


def devices() -> list[str]:
    """Devices to parametrise over: CPU always, CUDA where present."""
    return ["cpu", "cuda"] if HAS_CUDA else ["cpu"]


def device_backend_pairs() -> list[tuple[str, str]]:
    """Every (device, backend) that can run here, e.g. ``("cpu", "reference")``, ``("cuda", "triton")``."""
    return [(dev, name) for dev in devices() for name in available_backends(dev)]


def tolerance(dtype: torch.dtype) -> dict:
    """``atol``/``rtol`` for comparing an op's output in ``dtype`` with the float32 reference."""
    return {
        torch.float32: {"atol": 1e-4, "rtol": 1e-4},
        torch.float16: {"atol": 2e-3, "rtol": 2e-3},
        torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
    }[dtype]


# The accuracy contract of ``xr`` (README "The ops"), one table for every backend. With ``S = |Q|^T |x|`` (the
# elementwise-absolute product: the classical scale of a dot product's rounding error) and ``xr_ref`` the reference's
# output (float32 arithmetic, then rounded to x.dtype), every backend guarantees, for finite entries,
#     |xr - xr_ref| <= k * S + 2 * u_out * |xr_ref|
# k covers rounding Q to the GEMM's operand dtype (unit roundoff 2**-8 for bf16, 2**-11 for fp16; the 3xTF32 split
# of float32 inputs leaves ~2**-21) plus fp32 accumulation in a different order; u_out is the output dtype's unit
# roundoff (both sides round once). Non-finite reference entries must be reproduced exactly (same inf, NaN where NaN).
# Measured with emulate_gpu_projection (B=1, D=2048, r=round(0.176 M), randn x; README "The ops"): the largest
# |xr - xr_ref| / S at 40x40 / 48x48 / 64x64 is 1.1e-3 / 9.1e-4 / 6.6e-4 in bf16 (k = 4.2e-3), 1.3e-4 / 1.1e-4 /
# 8.4e-5 in fp16 (k = 7.3e-4), 9.0e-8 / 7.3e-8 / 6.0e-8 in fp32 (k = 9.5e-7); the worst error/bound ratio is 0.21.
PROJECTION_TOLERANCE = {
    torch.float32: {"k": 2.0**-20, "u_out": 2.0**-24},
    torch.float16: {"k": 2.0**-11 + 2.0**-12, "u_out": 2.0**-11},
    torch.bfloat16: {"k": 2.0**-8 + 2.0**-12, "u_out": 2.0**-8},
}


def projection_scale_of_error(x: torch.Tensor, rank: int, seed) -> torch.Tensor:
    """``S = |Q|^T |x|``: float32 ``(B, rank, D)``, the scale the projection's rounding errors are measured in."""
    q = philox.projection_matrix(seed, x.shape[0], x.shape[1], rank, device=x.device)
    return torch.bmm(q.abs().transpose(1, 2), x.float().abs())


def assert_projection_close(xr: torch.Tensor, x: torch.Tensor, rank: int, seed) -> None:
    """Assert that ``xr`` meets :data:`PROJECTION_TOLERANCE` against the reference for ``(x, rank, seed)``."""
    want = reference.project_and_sample(x, rank, seed)[0].float()
    got = xr.float().to(want.device)
    assert got.shape == want.shape, (got.shape, want.shape)
    finite = torch.isfinite(want)
    same_special = torch.equal(got[~finite].nan_to_num(0.0, 1.0, -1.0), want[~finite].nan_to_num(0.0, 1.0, -1.0))
    assert same_special and bool(torch.isnan(got[~finite]).eq(torch.isnan(want[~finite])).all()), "non-finite entries"
    tol = PROJECTION_TOLERANCE[x.dtype]
    bound = tol["k"] * projection_scale_of_error(x, rank, seed) + 2 * tol["u_out"] * want.abs()
    err = (got - want).abs()
    bad = finite & ~(err <= bound)
    assert not bool(bad.any()), (
        f"{int(bad.sum())} of {want.numel()} entries exceed the {x.dtype} bound; worst error/bound "
        f"{float((err[finite] / bound[finite].clamp_min(1e-30)).max()):.3g}"
    )


def round_tf32(v: torch.Tensor) -> torch.Tensor:
    """float32 -> TF32 (10 mantissa bits), nearest with ties away from zero (``cvt.rna.tf32.f32``); NaN kept."""
    bits = v.contiguous().view(torch.int32)
    rounded = ((bits + 4096) & -8192).view(torch.float32)
    return torch.where(torch.isnan(v), v, rounded)


def emulate_gpu_projection(x: torch.Tensor, rank: int, seed) -> torch.Tensor:
    """``xr`` computed in torch with the arithmetic of the GPU kernels (Triton ``_project_kernel``), any device.

    Half ``x``: ``Q`` rounded once to ``x.dtype``, products exact in fp32, fp32 accumulation, one rounding of the
    result. float32 ``x``: 3xTF32, ``q_lo^T x_hi + q_hi^T x_lo + q_hi^T x_hi`` with TF32-exact parts (a non-finite
    ``x`` element has ``lo = 0`` and does not enter the ``q_lo`` product). Summation order is torch's, not the
    kernel's: the two agree to fp32 accumulation rounding.
    """
    xf = x.float()
    q = philox.projection_matrix(seed, x.shape[0], x.shape[1], rank, device=x.device)
    if x.dtype != torch.float32:
        return torch.bmm(q.to(x.dtype).float().transpose(1, 2), xf).to(x.dtype)

    def split(v):
        hi = round_tf32(v)
        finite = torch.isfinite(hi)
        lo = torch.where(finite, round_tf32(v - hi), torch.zeros_like(v))
        return hi, lo, torch.where(finite, hi, torch.zeros_like(v))

    q_hi, q_lo, _ = split(q)
    x_hi, x_lo, x_hi_finite = split(xf)
    qt_hi, qt_lo = q_hi.transpose(1, 2), q_lo.transpose(1, 2)
    return torch.bmm(qt_lo, x_hi_finite) + torch.bmm(qt_hi, x_lo) + torch.bmm(qt_hi, x_hi)


def strided_like(t: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as ``t`` (``(B, M, D)``) in a non-contiguous layout: ``"permuted"`` or ``"sliced"``."""
    if kind == "contiguous":
        return t.contiguous()
    if kind == "permuted":
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    if kind == "sliced":
        wide = torch.zeros(t.shape[0], t.shape[1], 2 * t.shape[2] + 3, dtype=t.dtype, device=t.device)
        wide[:, :, 1 : 1 + 2 * t.shape[2] : 2] = t
        return wide[:, :, 1 : 1 + 2 * t.shape[2] : 2]
    raise ValueError(f"kind: expected contiguous, permuted or sliced, got {kind!r}")


def triton_nvidia_backend_available() -> bool:
    """True when Triton's NVIDIA compiler (with ``ptxas``) is installed: kernels compile for sm_90 without a GPU."""
    try:
        import triton.backends.nvidia  # noqa: F401
        from triton.backends.nvidia.compiler import get_ptxas  # noqa: F401
    except ImportError:
        return False
    return True


def run_compiled_triton_script(script: str, timeout: int = 600):
    """Run ``script`` in a fresh interpreter with ``TRITON_INTERPRET`` unset (it is read at import), this package
    on the path; returns the ``subprocess.CompletedProcess`` (text mode)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def one_intra_op_thread():
    """torch runs with one intra-op thread inside the block, the previous count restored after it. Tiny models gain
    nothing from intra-op threads, and on a shared 2-core machine the threads' spinning made the suite 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
