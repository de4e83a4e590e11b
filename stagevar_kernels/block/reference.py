"""Pure-torch block ops: the CPU kernels, the test oracle and the semantics in code.

Each function repeats, op for op and in the same dtypes, the inline math of the Infinity and STAR blocks it
replaces, so that a block switched to these ops computes the same bits on CPU. Argument checking lives in
:mod:`stagevar_kernels.block.validation`; these functions assume valid input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def norm_modulate(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    eps: float,
    out_dtype: torch.dtype | None,
) -> torch.Tensor:
    """LayerNorm of ``x.float()`` over the last dim, optional affine, optional AdaLN modulation, one cast.

    Args:
        x: ``(R, L, C)`` float32/float16/bfloat16.
        weight, bias: ``(C,)`` float32 or None (LayerNorm affine).
        scale, shift: ``(R or 1, 1, C)`` float32, both or neither: ``y * (1 + scale) + shift``.
        eps: LayerNorm epsilon.
        out_dtype: dtype of the result (None: float32).
    Returns:
        ``(R, L, C)`` contiguous in ``out_dtype``.
    """
    y = F.layer_norm(x.float(), (x.shape[-1],), weight, bias, eps)
    if scale is not None:
        y = y.mul(scale.add(1)).add_(shift)
    return y.to(out_dtype or torch.float32).contiguous()


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``qkv`` ``(R, L, 3C)`` -> views q, k, v ``(R, H, L, c)`` (the ``view(R, L, 3, H, c).permute`` of the blocks)."""
    R, L, C3 = qkv.shape
    qkv5 = qkv.unflatten(-1, (3, heads, C3 // (3 * heads))).permute(2, 0, 3, 1, 4)
    return qkv5[0], qkv5[1], qkv5[2]


def rope_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, c/2)`` or ``(R, L, c/2)`` tables -> broadcastable over ``(R, H, L, c/2)``."""
    if cos.dim() == 3:
        return cos[:, None], sin[:, None]
    return cos, sin


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs ``(2j, 2j+1)`` of float32 ``x`` ``(R, H, L, c)``: float32, same shape."""
    x = x.float().unflatten(-1, (-1, 2))
    x0, x1 = x[..., 0], x[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def qk_norm_rope(
    qkv: torch.Tensor,
    scale_mul: torch.Tensor,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
    k_out: torch.Tensor,
    v_out: torch.Tensor,
    rope_first: bool,
    eps: float,
) -> torch.Tensor:
    """Split ``qkv`` into heads, l2-normalise q (times ``scale_mul``) and k, rotate them, write k and v.

    Args:
        qkv: ``(R, L, 3C)`` in the attention dtype ``dt``; ``H = scale_mul.numel()`` heads of ``c = C / H``.
        scale_mul: ``(H,)`` or ``(1, H, 1, 1)`` float32 per-head multiplier of q.
        cos, sin: float32 ``(L, c/2)`` or ``(R, L, c/2)``, or both None (no rotation).
        k_out, v_out: ``(R, H, L, c)`` in ``dt``, any strides: receive k and v.
        rope_first: False (Infinity): normalise in float32, rotate in float32, one cast to ``dt``.
            True (STAR): rotate in float32 and cast to ``dt``, then normalise in ``dt``.
        eps: the floor of the l2 norm (``F.normalize``).
    Returns:
        q ``(R, H, L, c)`` contiguous in ``dt``.
    """
    heads = scale_mul.numel()
    q, k, v = split_heads(qkv, heads)
    mul = scale_mul.reshape(1, heads, 1, 1)
    dt = qkv.dtype
    if rope_first:
        if cos is not None:
            c, s = rope_tables(cos, sin)
            q, k = rotate_pairs(q, c, s).to(dt), rotate_pairs(k, c, s).to(dt)
        q = F.normalize(q, dim=-1, eps=eps).mul(mul).to(dt)
        k = F.normalize(k, dim=-1, eps=eps).to(dt)
    else:
        q = F.normalize(q.float(), dim=-1, eps=eps).mul(mul)
        k = F.normalize(k.float(), dim=-1, eps=eps)
        if cos is not None:
            c, s = rope_tables(cos, sin)
            q, k = rotate_pairs(q, c, s), rotate_pairs(k, c, s)
        q, k = q.to(dt), k.to(dt)
    k_out.copy_(k)
    v_out.copy_(v)
    return q.contiguous()


def residual_dtype(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor | None, round_to_y: bool) -> torch.dtype:
    """The dtype of :func:`residual_gate`'s result: torch's promotion of its expression."""
    if gate is None:
        return torch.promote_types(x.dtype, torch.float32)
    if round_to_y:
        return torch.promote_types(x.dtype, y.dtype)
    return torch.promote_types(x.dtype, torch.promote_types(y.dtype, gate.dtype))


def residual_gate(
    x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor | None, scale: float, round_to_y: bool
) -> torch.Tensor:
    """Gated residual add.

    Args:
        x: ``(R, L, C)`` residual stream (float32 in the models).
        y: ``(R, L, C)`` or ``(1, L, C)`` branch output, any float dtype.
        gate: ``(R or 1, 1, C)`` float32 or None.
        scale: multiplier of ``y`` when ``gate`` is None.
        round_to_y: with a gate, round ``y * gate`` to ``y.dtype`` before the add (an in-place ``mul_`` on ``y``).
    Returns:
        ``(R, L, C)`` contiguous: ``x + y.float() * scale`` (gate None; ``scale == 1`` adds ``y.float()`` as is),
        ``x + (y * gate).to(y.dtype)`` (round_to_y) or ``x + y * gate``, in the dtype torch promotes to.
    """
    if gate is None:
        y = y.float()
        if scale != 1.0:
            y = y * scale
        out = x + y
    elif round_to_y:
        out = x + (y * gate).to(y.dtype)
    else:
        out = x + y * gate
    return out.contiguous()


def bit_pair_probs(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Probabilities of the two values of every bit after the top-k/top-p filter of the logit pair.

    The filter is the one of Infinity's sampler on the ``(B, L*d, 2)`` view: top-k keeps the entries not below the
    k-th largest (``top_k <= 0``: no top-k; ``top_k >= 2`` keeps both); top-p sorts ascending, removes the entries
    whose cumulative softmax is ``<= 1 - top_p`` and always keeps the largest (``top_p <= 0``: no top-p). Removed
    entries get probability 0.

    Args:
        logits: ``(B, L, 2d)`` float32 (not modified).
        top_k: int; top_p: float.
    Returns:
        ``(B*L*d, 2)`` float32 contiguous.
    """
    B, L, V2 = logits.shape
    pairs = logits.reshape(B, L * (V2 // 2), 2)
    if top_k > 0:
        k = min(top_k, 2)
        remove = pairs < pairs.topk(k, largest=True, sorted=False, dim=-1)[0].amin(dim=-1, keepdim=True)
        pairs = pairs.masked_fill(remove, -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = pairs.sort(dim=-1, descending=False)
        sorted_remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        sorted_remove[..., -1:] = False
        pairs = pairs.masked_fill(sorted_remove.scatter(sorted_idx.ndim - 1, sorted_idx, sorted_remove), -torch.inf)
    return pairs.softmax(dim=-1).reshape(-1, 2).contiguous()
