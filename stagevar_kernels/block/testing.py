"""Test helpers of the block ops: the tolerance table of the Triton kernels and strided KV-cache views."""

from __future__ import annotations

import torch

# Triton kernel vs reference, by op and output dtype: kwargs of ``torch.testing.assert_close``. Why each is what it is:
# - norm_modulate: the row mean and variance are summed in a different order than torch's (a tree in the kernel,
#   cascaded sums in ATen), so float32 output differs by a few ulp of the normalised value times ``1 + scale``;
#   half outputs are then one rounding apart at most (one ulp: 2^-7 relative for bf16, 2^-10 for fp16).
# - qk_norm_rope: the same for the l2 norm (one sum per head); RoPE is exact elementwise arithmetic (no FMA
#   contraction: the kernels are compiled with ``enable_fp_fusion=False``), so only the norm's ulp propagates.
# - residual_gate: elementwise with the same rounding points as torch: equal bits (tolerance 0).
# - bit_pair_probs: ``exp`` of the kernel (``tl.exp``) and of ATen's softmax differ by an ulp or two; the top-k/top-p
#   decisions agree except when the smaller probability lies within float32 rounding of ``1 - top_p``.
TOLERANCES = {
    "norm_modulate": {
        torch.float32: {"atol": 2e-5, "rtol": 2e-5},
        torch.float16: {"atol": 2e-3, "rtol": 1e-3},
        torch.bfloat16: {"atol": 1.6e-2, "rtol": 8e-3},
    },
    "qk_norm_rope": {
        torch.float32: {"atol": 2e-6, "rtol": 2e-6},
        torch.float16: {"atol": 1e-3, "rtol": 1e-3},
        torch.bfloat16: {"atol": 8e-3, "rtol": 8e-3},
    },
    "residual_gate": {
        torch.float32: {"atol": 0.0, "rtol": 0.0},
        torch.float16: {"atol": 0.0, "rtol": 0.0},
        torch.bfloat16: {"atol": 0.0, "rtol": 0.0},
    },
    "bit_pair_probs": {
        torch.float32: {"atol": 1e-6, "rtol": 1e-6},
    },
}


def tolerance(op: str, dtype: torch.dtype) -> dict:
    """``atol``/``rtol`` for comparing ``op``'s Triton output in ``dtype`` with its reference."""
    return TOLERANCES[op][dtype]


def cache_views(
    rows: int, heads: int, length: int, head_dim: int, dtype: torch.dtype, device, layout: str = "rhlc"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``k_out``, ``v_out`` ``(rows, heads, length, head_dim)`` as strided views into one larger, NaN-filled cache
    buffer (more rows, positions before and after, K and V interleaved), plus the buffer itself.

    ``layout``: ``"rhlc"`` (a ``(2, R+1, H, Lmax, c)`` cache, the view starts at position 3) or ``"rlhc"`` (a
    ``(R+1, Lmax, 2, H, c)`` token-major cache, permuted to ``(R, H, L, c)``)."""
    fill = torch.full((), float("nan"), dtype=dtype)
    if layout == "rhlc":
        buf = fill.expand(2, rows + 1, heads, length + 5, head_dim).clone().to(device)
        return buf[0, 1:, :, 3 : 3 + length], buf[1, 1:, :, 3 : 3 + length], buf
    if layout == "rlhc":
        buf = fill.expand(rows + 1, length + 5, 2, heads, head_dim).clone().to(device)
        kv = buf[:rows, 2 : 2 + length].permute(2, 0, 3, 1, 4)  # (2, R, H, L, c)
        return kv[0], kv[1], buf
    raise ValueError(f"layout: expected 'rhlc' or 'rlhc', got {layout!r}")


# Half-precision outputs of the kernels round the same float32 value as the reference, which differs at most by the
# reduction order's ulp, so almost every element is bit-equal: a kernel that rounds at a different point (e.g. the
# norm of ``F.normalize`` kept in float32 instead of rounded) differs in about a third of them, inside the tolerance.
MAX_HALF_MISMATCH = 0.02


def assert_close_to_reference(op: str, got: torch.Tensor, want: torch.Tensor) -> None:
    """``got`` within ``tolerance(op, dtype)`` of ``want``; for half dtypes also at most ``MAX_HALF_MISMATCH`` of the
    elements not bit-equal."""
    torch.testing.assert_close(got, want, equal_nan=True, **tolerance(op, got.dtype))
    if got.dtype in (torch.float16, torch.bfloat16) and got.numel():
        differ = ((got != want) & ~(got.isnan() & want.isnan())).float().mean().item()
        assert differ <= MAX_HALF_MISMATCH, f"{op}: {differ:.1%} of the {got.dtype} elements differ from the reference"
