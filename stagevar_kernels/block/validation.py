"""Cheap argument checks of the block ops: shapes, dtypes, devices and Python scalars, never tensor data.

Nothing here reads tensor values, so no check forces a device-to-host synchronisation. Each failure raises
``ValueError`` whose message starts with the name of the offending argument.
"""

from __future__ import annotations

import torch

from ..validation import SUPPORTED_DTYPES, check_tensor


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_float32(name: str, t: torch.Tensor, shape: tuple[int, ...], device: torch.device) -> None:
    check_tensor(name, t, len(shape), dtypes=(torch.float32,))
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name}: on {t.device}, expected {device}")


def _check_rows(name: str, t: torch.Tensor, rows: int, channels: int, device: torch.device) -> None:
    """A per-row vector ``(rows or 1, 1, channels)`` float32."""
    check_tensor(name, t, 3, dtypes=(torch.float32,))
    if t.shape[0] not in (rows, 1) or t.shape[1] != 1 or t.shape[2] != channels:
        raise ValueError(f"{name}: expected shape ({rows} or 1, 1, {channels}), got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name}: on {t.device}, expected {device}")


def _check_tensor_ndims(name: str, t, ndims: tuple[int, ...], dtype: torch.dtype) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    check_tensor(name, t, t.dim() if t.dim() in ndims else ndims[0], dtypes=(dtype,))


def _check_eps(eps) -> None:
    if not _is_float(eps) or not eps >= 0:
        raise ValueError(f"eps: expected a float >= 0, got {eps!r}")


def check_norm_modulate(x, weight, bias, scale, shift, eps, out_dtype) -> None:
    """Validate the arguments of ``norm_modulate`` (see its docstring for the contract)."""
    check_tensor("x", x, 3)
    R, _, C = x.shape
    if C < 1:
        raise ValueError(f"x: needs at least one channel, got shape {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _check_float32(name, t, (C,), x.device)
    if (scale is None) != (shift is None):
        raise ValueError("scale/shift: give both or neither")
    if scale is not None:
        _check_rows("scale", scale, R, C, x.device)
        _check_rows("shift", shift, R, C, x.device)
    _check_eps(eps)
    if out_dtype is not None and out_dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"out_dtype: expected None or one of {SUPPORTED_DTYPES}, got {out_dtype!r}")


def check_qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first, eps) -> tuple[int, int]:
    """Validate the arguments of ``qk_norm_rope``; returns ``(H, c)``."""
    check_tensor("qkv", qkv, 3)
    R, L, C3 = qkv.shape
    _check_tensor_ndims("scale_mul", scale_mul, (1, 4), torch.float32)
    if scale_mul.dim() == 4 and (scale_mul.shape[0], scale_mul.shape[2], scale_mul.shape[3]) != (1, 1, 1):
        raise ValueError(f"scale_mul: expected shape (H,) or (1, H, 1, 1), got {tuple(scale_mul.shape)}")
    if scale_mul.device != qkv.device:
        raise ValueError(f"scale_mul: on {scale_mul.device}, expected {qkv.device}")
    H = scale_mul.numel()
    if H < 1 or C3 % (3 * H) != 0 or C3 // (3 * H) % 2 != 0:
        raise ValueError(f"qkv: last dim {C3} is not 3 * H * c with H = {H} heads of an even head dim c")
    c = C3 // (3 * H)
    if (cos is None) != (sin is None):
        raise ValueError("cos/sin: give both or neither")
    if cos is not None:
        for name, t in (("cos", cos), ("sin", sin)):
            _check_tensor_ndims(name, t, (2, 3), torch.float32)
            if tuple(t.shape) not in ((L, c // 2), (R, L, c // 2)):
                half = c // 2
                raise ValueError(f"{name}: expected shape ({L}, {half}) or ({R}, {L}, {half}), got {tuple(t.shape)}")
            if t.device != qkv.device:
                raise ValueError(f"{name}: on {t.device}, expected {qkv.device}")
    for name, t in (("k_out", k_out), ("v_out", v_out)):
        check_tensor(name, t, 4)
        if tuple(t.shape) != (R, H, L, c):
            raise ValueError(f"{name}: expected shape {(R, H, L, c)}, got {tuple(t.shape)}")
        if t.dtype != qkv.dtype:
            raise ValueError(f"{name}: dtype {t.dtype} differs from qkv's {qkv.dtype}")
        if t.device != qkv.device:
            raise ValueError(f"{name}: on {t.device}, expected {qkv.device}")
    if not isinstance(rope_first, bool):
        raise ValueError(f"rope_first: expected a bool, got {type(rope_first).__name__}")
    _check_eps(eps)
    return H, c


def check_residual_gate(x, y, gate, scale, round_to_y) -> None:
    """Validate the arguments of ``residual_gate``."""
    check_tensor("x", x, 3)
    check_tensor("y", y, 3)
    R, L, C = x.shape
    if y.shape[0] not in (R, 1) or tuple(y.shape[1:]) != (L, C):
        raise ValueError(f"y: expected shape ({R} or 1, {L}, {C}), got {tuple(y.shape)}")
    if y.device != x.device:
        raise ValueError(f"y: on {y.device}, expected {x.device}")
    if gate is not None:
        _check_rows("gate", gate, R, C, x.device)
    if not _is_float(scale):
        raise ValueError(f"scale: expected a float, got {scale!r}")
    if gate is not None and scale != 1.0:
        raise ValueError(f"scale: applies only without a gate, got {scale!r} with a gate")
    if not isinstance(round_to_y, bool):
        raise ValueError(f"round_to_y: expected a bool, got {type(round_to_y).__name__}")
    if round_to_y and gate is None:
        raise ValueError("round_to_y: needs a gate")


def check_bit_pair_probs(logits, top_k, top_p) -> None:
    """Validate the arguments of ``bit_pair_probs``."""
    check_tensor("logits", logits, 3, dtypes=(torch.float32,))
    if logits.shape[2] % 2 != 0:
        raise ValueError(f"logits: last dim must be even (pairs of logits), got {logits.shape[2]}")
    if not _is_int(top_k):
        raise ValueError(f"top_k: expected an int, got {top_k!r}")
    if not _is_float(top_p):
        raise ValueError(f"top_p: expected a float, got {top_p!r}")
