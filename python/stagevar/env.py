"""``stagevar env``: versions, devices and which ops backends can run here, with the reason when one cannot."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys

import torch


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _extension_status() -> tuple[bool, str]:
    """Whether ``stagevar_kernels._C`` imports, and the import error's text when it does not."""
    if os.environ.get("STAGEVAR_SKIP_EXT", "0") == "1":
        return False, "skipped (STAGEVAR_SKIP_EXT=1)"
    try:
        importlib.import_module("stagevar_kernels._C")
    except ImportError as err:
        return False, f"does not import: {err}"
    return True, "loaded"


def _devices() -> list[str]:
    lines = [f"cpu: {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads"]
    if torch.version.cuda is None:
        lines.append("cuda: not available (this torch is a CPU build)")
    elif not torch.cuda.is_available():
        lines.append(f"cuda: not available (torch built for CUDA {torch.version.cuda}, but no device or driver)")
    else:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(
                f"cuda:{i}: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                f"compute capability {props.major}.{props.minor} (CUDA {torch.version.cuda})"
            )
    return lines


def _backends(ext_ok: bool, ext_text: str) -> list[str]:
    from stagevar_kernels.backends import (
        available_backends,
        cuda_kernels_built,
        triton_installed,
        triton_interpreting,
    )

    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    lines = ["reference: available on every device"]
    interpreting = triton_interpreting()
    if not triton_installed():
        lines.append("triton: not available (Triton is not installed: pip install triton)")
    elif cuda is not None and "triton" in available_backends(cuda):
        lines.append("triton: available on cuda")
    elif interpreting:
        lines.append("triton: CPU tensors through the interpreter (TRITON_INTERPRET=1, slow; for tests)")
    else:
        lines.append("triton: installed, but runs on CUDA devices only (none here; TRITON_INTERPRET=1 for CPU tests)")
    if not ext_ok:
        lines.append(f"cuda: not available (the compiled extension stagevar_kernels._C {ext_text})")
    elif not cuda_kernels_built():
        lines.append("cuda: not available (the extension was built without a CUDA toolkit: CPU build)")
    elif cuda is None:
        lines.append("cuda: kernels built, but no CUDA device here")
    else:
        lines.append("cuda: available on cuda")
    return lines


def report() -> str:
    """The text ``stagevar env`` prints."""
    from . import __version__

    ext_ok, ext_text = _extension_status()
    lines = [
        f"stagevar {__version__}",
        f"python {platform.python_version()} ({sys.executable})",
        f"torch {torch.__version__}",
        f"triton {_version('triton')}",
        f"transformers {_version('transformers')} (needed by generate/calibrate with checkpoints)",
        f"stagevar_kernels._C: {ext_text}",
        "devices:",
        *(f"  {line}" for line in _devices()),
        "ops backends:",
        *(f"  {line}" for line in _backends(ext_ok, ext_text)),
    ]
    return "\n".join(lines)
