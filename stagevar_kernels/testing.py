"""Helpers for the tests of this package and of code built on it (no pytest dependency at import)."""

from __future__ import annotations

import torch

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
