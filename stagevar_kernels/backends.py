"""Which implementations can run where, and which one ``backend=None`` picks.

- ``reference``: pure torch, every device. The CPU default.
- ``triton``: CUDA devices with Triton installed; CPU tensors only under ``TRITON_INTERPRET=1`` (tests).
- ``cuda``: CUDA devices when the compiled extension carries the CUDA kernels.

Preference on CUDA devices is ``cuda``, then ``triton``, then ``reference``: the expected order of speed, not yet
confirmed by GPU microbenchmarks (bench/RESULTS.md has no GPU figures yet).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

BACKENDS = ("reference", "triton", "cuda")
PREFERENCE = ("cuda", "triton", "reference")


def _load_extension() -> bool:
    """Import ``stagevar_kernels._C`` if it was built; the package works without it."""
    if os.environ.get("STAGEVAR_SKIP_EXT", "0") == "1":
        return False
    try:
        from . import _C  # noqa: F401
    except ImportError:
        return False
    return True


HAS_EXT = _load_extension()


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """True when Triton kernels run on CPU tensors through the interpreter (set before the kernels import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def cuda_kernels_built() -> bool:
    """True when ``_C`` registered the CUDA kernels (an extension built with a CUDA toolkit)."""
    if not HAS_EXT:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("stagevar::_project_and_sample_cuda", "CUDA")


def available_backends(device: torch.device | str) -> list[str]:
    """The backends that can run on ``device``, in the order of ``BACKENDS``.

    Args:
        device: a ``torch.device`` or a string such as ``"cpu"`` or ``"cuda:0"``.
    """
    device = torch.device(device)
    found = ["reference"]
    if device.type == "cuda":
        if triton_installed() and not triton_interpreting():
            found.append("triton")
        if cuda_kernels_built():
            found.append("cuda")
    elif device.type == "cpu" and triton_installed() and triton_interpreting():
        found.append("triton")
    return found


def default_backend(device: torch.device | str) -> str:
    """The backend ``backend=None`` resolves to: the reference on CPU, the first available of ``PREFERENCE`` on CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return "reference"
    available = available_backends(device)
    return next(name for name in PREFERENCE if name in available)


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """Validate ``backend`` for ``device``; ``None`` picks :func:`default_backend`."""
    if backend is None:
        return default_backend(device)
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS} or None, got {backend!r}")
    available = available_backends(device)
    if backend not in available:
        raise ValueError(f"backend: {backend!r} is not available on {device} (available: {available})")
    return backend
