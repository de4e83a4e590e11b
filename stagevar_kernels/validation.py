"""Cheap argument checks shared by every backend: shapes, dtypes, devices, ranges of Python scalars.

Nothing here reads tensor data, so no check forces a device-to-host synchronisation. Each failure raises
``ValueError`` whose message starts with the name of the offending argument.
"""

from __future__ import annotations

import torch

from .philox import MAX_SEED
from .reference import RESTORE_MODES

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_tensor(name: str, t, ndim: int, dtypes=SUPPORTED_DTYPES) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name}: dtype {str(t.dtype).replace('torch.', '')} is not supported (expected {names})")


def check_no_grad(name: str, t: torch.Tensor) -> None:
    if t.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            f"{name}: requires_grad is set; the stagevar ops are inference-only (run under torch.no_grad() "
            "or torch.inference_mode(), or detach the input)"
        )


def check_hw(name: str, hw) -> tuple[int, int]:
    if not isinstance(hw, (tuple, list)) or len(hw) != 2 or not all(_is_int(v) for v in hw):
        raise ValueError(f"{name}: expected a pair of ints (h, w), got {hw!r}")
    if hw[0] < 1 or hw[1] < 1:
        raise ValueError(f"{name}: sizes must be positive, got {tuple(hw)}")
    return int(hw[0]), int(hw[1])


def check_seed_tensor(name: str, seed, device: torch.device) -> None:
    """A device seed: int64, exactly one element (shape ``()`` or ``(1,)``), on ``device``. Its value is not read
    (that would synchronise with the host); the kernels use its 64 bits as they are."""
    if seed.dtype != torch.int64:
        raise ValueError(f"{name}: a seed tensor must be int64, got {str(seed.dtype).replace('torch.', '')}")
    if seed.dim() > 1 or seed.numel() != 1:
        raise ValueError(f"{name}: a seed tensor must hold one element (shape () or (1,)), got {tuple(seed.shape)}")
    if seed.device != device:
        raise ValueError(f"{name}: the seed tensor is on {seed.device} but x is on {device}")


def check_project_and_sample(x, rank, seed, seed_tensor=None) -> None:
    """Validate the arguments of ``project_and_sample`` (see its docstring for the contract).

    ``seed`` is a Python int, or (public API) a one-element int64 tensor; the registered op takes the tensor as
    ``seed_tensor`` and then ignores ``seed``.
    """
    check_tensor("x", x, 3)
    if not _is_int(rank):
        raise ValueError(f"rank: expected an int, got {type(rank).__name__}")
    rows = x.shape[1]
    if rows < 1 or x.shape[2] < 1:
        raise ValueError(f"x: needs at least one row and one channel, got shape {tuple(x.shape)}")
    if not 1 <= rank <= rows:
        raise ValueError(f"rank: must satisfy 1 <= rank <= M = x.shape[1] = {rows}, got {rank}")
    if seed_tensor is not None:
        check_seed_tensor("seed_tensor", seed_tensor, x.device)
        return
    if isinstance(seed, torch.Tensor):
        check_seed_tensor("seed", seed, x.device)
        return
    if not _is_int(seed):
        raise ValueError(f"seed: expected an int or a one-element int64 tensor, got {type(seed).__name__}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed: must lie in [0, 2**63), got {seed}")


def check_restore_merge(y, idx, cache, src_hw, dst_hw, mode) -> tuple[tuple[int, int], tuple[int, int]]:
    """Validate the arguments of ``restore_merge``; returns ``src_hw`` and ``dst_hw`` as int pairs."""
    check_tensor("y", y, 3)
    check_tensor("idx", idx, 2, dtypes=(torch.int64,))
    check_tensor("cache", cache, 3)
    if cache.dtype != y.dtype:
        raise ValueError(f"cache: dtype {cache.dtype} differs from y's {y.dtype}")
    if y.device != idx.device or y.device != cache.device:
        raise ValueError(
            f"idx/cache: all tensors must share y's device {y.device}, got {idx.device} and {cache.device}"
        )
    batch, rank, channels = y.shape
    if idx.shape[0] != batch or cache.shape[0] != batch:
        raise ValueError(f"idx/cache: batch sizes {idx.shape[0]} and {cache.shape[0]} differ from y's {batch}")
    if idx.shape[1] != rank:
        raise ValueError(f"idx: has {idx.shape[1]} indices per batch item but y has {rank} rows")
    if cache.shape[2] != channels:
        raise ValueError(f"cache: has {cache.shape[2]} channels but y has {channels}")
    src = check_hw("src_hw", src_hw)
    dst = check_hw("dst_hw", dst_hw)
    if src[0] * src[1] != cache.shape[1]:
        raise ValueError(f"src_hw: {src} holds {src[0] * src[1]} rows but cache has {cache.shape[1]}")
    if rank > dst[0] * dst[1]:
        raise ValueError(f"dst_hw: {dst} holds {dst[0] * dst[1]} rows, fewer than the {rank} rows of y")
    if mode not in RESTORE_MODES:
        raise ValueError(f"mode: expected one of {RESTORE_MODES}, got {mode!r}")
    return src, dst
