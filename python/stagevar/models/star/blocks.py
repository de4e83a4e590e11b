"""STAR's transformer block (``models/basic_var.py::AttnBlock``): modules with the official names, and the block
math as functions that read parameters by those names, so they run on our modules and on the official ones.

Block math at inference (``x`` is the fp32 residual stream, ``LN`` the shared affine-free ``ln_wo_grad``):

1. ``x = x + SelfAttn(LN(x))``: qkv with biases ``[q_bias, 0, v_bias]``, RoPE on q and k, l2-normalised q (times
   ``exp(min(scale_mul_1H11, ln 100))``) and k, softmax scale 1, keys = cached keys of earlier scales + own keys.
2. ``x = x + CrossAttn(LN(x), text)[0]``: the module output is indexed with ``[0]``, i.e. **batch row 0**, and that
   ``(L, C)`` result is broadcast onto every row. The checkpoint was trained this way, so we keep it.
3. ``x = x + fc2(gelu_tanh(fc1(LN(x))))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import stagevar_kernels.block as block_ops

from .rope import apply_rope

MAX_SCALE_MUL = math.log(100.0)


class SelfAttention(nn.Module):
    """Parameters of the self-attention (``Attention(is_cross=False)``); the math lives in :func:`self_attention`."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.num_heads, self.head_dim = heads, width // heads
        self.mat_qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width))
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
        self.proj = nn.Linear(width, width)


class CrossAttention(nn.Module):
    """Parameters of the cross-attention (``Attention(is_cross=True)``); math in :func:`cross_attention`."""

    def __init__(self, width: int, heads: int, in_dim_cross: int):
        super().__init__()
        self.num_heads, self.head_dim = heads, width // heads
        self.mat_kv = nn.Linear(in_dim_cross, 2 * width, bias=False)
        self.mat_q = nn.Linear(width, width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width))
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
        self.proj = nn.Linear(width, width)


class FFN(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class STARBlock(nn.Module):
    """One ``AttnBlock`` (no AdaLN: STAR uses ``shared_aln=False``). Children in the official order."""

    def __init__(self, width: int, heads: int, in_dim_cross: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.drop_path = nn.Identity()
        self.attn = SelfAttention(width, heads)
        self.cross_attn = CrossAttention(width, heads, in_dim_cross)
        self.ffn = FFN(width, round(width * mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(width, eps=eps, elementwise_affine=False)


# ----------------------------------------------------------------------------------------------- functional math


def num_heads_of(attn: nn.Module) -> int:
    """Heads of an attention module, read from ``scale_mul_1H11`` ``(1, H, 1, 1)`` (present in both codebases)."""
    return attn.scale_mul_1H11.shape[1]


def _scale_mul(attn: nn.Module) -> torch.Tensor:
    return attn.scale_mul_1H11.clamp_max(MAX_SCALE_MUL).exp()


@dataclass
class BlockConsts:
    """What a block reads at every step that depends only on its weights, built once per generation:
    ``qkv_bias`` ``[q_bias, 0, v_bias]`` ``(3C,)``, ``sa_scale_mul`` and ``ca_scale_mul`` ``(1, H, 1, 1)``."""

    qkv_bias: torch.Tensor
    sa_scale_mul: torch.Tensor
    ca_scale_mul: torch.Tensor

    @classmethod
    def of(cls, block: nn.Module) -> BlockConsts:
        attn = block.attn
        return cls(
            torch.cat((attn.q_bias, attn.zero_k_bias, attn.v_bias)),
            _scale_mul(attn).float(),
            _scale_mul(block.cross_attn),
        )


def self_attention_qkv(
    attn: nn.Module,
    h: torch.Tensor,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
    consts: BlockConsts | None = None,
):
    """q, k, v of the self-attention on normalised input ``h`` ``(R, L, C)``: each ``(R, H, L, c)``.

    q is RoPE'd, l2-normalised and multiplied by the per-head scale; k is RoPE'd and l2-normalised (what upstream
    caches); v is raw. All three have v's dtype (the autocast dtype under autocast).
    """
    R, L, C = h.shape
    H = num_heads_of(attn)
    bias = consts.qkv_bias if consts is not None else torch.cat((attn.q_bias, attn.zero_k_bias, attn.v_bias))
    qkv = F.linear(h, attn.mat_qkv.weight, bias).view(R, L, 3, H, C // H).permute(2, 0, 3, 1, 4)
    v = qkv[2]
    if cos is not None:  # q and k rotated together: one pass over both
        q, k = apply_rope(qkv[:2], cos, sin).unbind(0)
    else:
        q, k = qkv[0], qkv[1]
    sm = consts.sa_scale_mul if consts is not None else _scale_mul(attn)
    q = F.normalize(q, dim=-1).mul(sm).to(v.dtype)
    k = F.normalize(k, dim=-1).to(v.dtype)
    return q, k, v


def attend(attn: nn.Module, q, k, v, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA with softmax scale 1 (q is pre-scaled), then ``proj``: ``(R, Lq, C)``."""
    R, H, L, c = q.shape
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    return attn.proj(o.transpose(1, 2).reshape(R, L, H * c))


def text_bias(mask01: torch.Tensor) -> torch.Tensor:
    """Text mask ``(R, 77)`` of 0/1 to the additive ``(R, 1, 1, 77)`` float32 bias (0 keep, -inf pad), as upstream."""
    zero = torch.zeros((), dtype=torch.float32, device=mask01.device)
    ninf = torch.full((), -math.inf, dtype=torch.float32, device=mask01.device)
    return torch.where(mask01 == 1, zero, ninf)[:, None, None, :]


def cross_text_kv(cross: nn.Module, text: torch.Tensor):
    """k (l2-normalised) and v of the cross-attention for text ``(R, T, D)``: each ``(R, H, T, c)``."""
    R, T, _ = text.shape
    H = num_heads_of(cross)
    C = cross.mat_q.weight.shape[0]
    kv = F.linear(text, cross.mat_kv.weight, torch.cat((cross.zero_k_bias, cross.v_bias)))
    k, v = kv.view(R, T, 2, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)
    return F.normalize(k, dim=-1).to(v.dtype), v


def cross_attention(
    cross: nn.Module, h: torch.Tensor, text_k, text_v, bias: torch.Tensor, scale_mul: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-attention output ``(R', L, C)`` for queries ``h`` ``(R', L, C)`` and text k/v ``(R', H, T, c)``;
    ``scale_mul``: the queries' per-head scale when already computed (:class:`BlockConsts`)."""
    R, L, C = h.shape
    H = num_heads_of(cross)
    q = F.linear(h, cross.mat_q.weight, cross.q_bias).view(R, L, H, C // H).transpose(1, 2)
    q = F.normalize(q, dim=-1).mul(_scale_mul(cross) if scale_mul is None else scale_mul).to(text_v.dtype)
    return attend(cross, q, text_k, text_v, bias)


def ffn_forward(ffn: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return ffn.fc2(F.gelu(ffn.fc1(h), approximate="tanh"))


def block_forward(
    block: nn.Module,
    x: torch.Tensor,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
    *,
    kv_append=None,
    self_mask: torch.Tensor | None = None,
    text_row0=None,
    text=None,
    consts: BlockConsts | None = None,
) -> torch.Tensor:
    """One STAR block on ``x`` ``(R, L, C)``; returns the new residual stream ``(R, L, C)``.

    Args:
        cos, sin: RoPE tables ``(L, c/2)`` or ``(R, L, c/2)`` float32, or None (no rotation).
        kv_append: ``f(k, v) -> (k_all, v_all)`` that stores this call's keys/values and returns every key/value to
            attend to (KV-cached generation). None: attend to this call's own keys only (teacher forcing).
        self_mask: additive or boolean mask for the self-attention (teacher forcing: block-causal), or None.
        text_row0: ``(k, v, bias)`` of the text of the **current row 0** (``(1, H, T, c)``, ``(1,1,1,T)``): the
            cross-attention is computed for row 0 only and broadcast, which equals upstream's ``[0]``.
        text: ``(hidden (R, T, D), bias (R, 1, 1, T))``: compute the cross-attention for every row, then take row 0,
            exactly as upstream does (the test oracle). Exactly one of ``text_row0``/``text`` may be given.
        consts: the block's :class:`BlockConsts` (computed here when None).
    """
    ln = block.ln_wo_grad
    q, k, v = self_attention_qkv(block.attn, ln(x), cos, sin, consts)
    if kv_append is not None:
        k, v = kv_append(k, v)
    x = x + attend(block.attn, q, k, v, self_mask)
    if text_row0 is not None:
        tk, tv, tb = text_row0  # (1, H, T, c), (1, H, T, c), (1, 1, 1, T)
        ca_scale = None if consts is None else consts.ca_scale_mul
        # row 0's (L, C) output broadcast onto every row: upstream's [0]
        x = x + cross_attention(block.cross_attn, ln(x[:1]), tk, tv, tb, ca_scale)[0]
    elif text is not None:
        hidden, bias = text
        tk, tv = cross_text_kv(block.cross_attn, hidden)
        x = x + cross_attention(block.cross_attn, ln(x), tk, tv, bias)[0]
    return x + ffn_forward(block.ffn, ln(x))


def _ln(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``ln_wo_grad(x)``: one fused op on the fp32 stream (the module itself on a half-precision stream)."""
    if x.dtype != torch.float32:
        return block.ln_wo_grad(x)
    return block_ops.norm_modulate(x, eps=block.ln_wo_grad.eps)


def block_forward_static(block: nn.Module, x: torch.Tensor, cos, sin, *, kv, text_row0, consts: BlockConsts):
    """One STAR block on the engine: the same bits as :func:`block_forward` with ``kv_append``/``text_row0``.

    Args:
        x: ``(R, L, C)`` the residual stream.
        cos, sin: RoPE ``(L, c/2)`` or ``(R, L, c/2)`` float32, or None.
        kv: ``kv(L, dtype) -> (k_new, v_new, k_all, v_all)`` (:meth:`stagevar.engine.StaticKV.reserve`):
            the fused q/k RoPE + norm writes this call's K/V into ``k_new``/``v_new``; queries attend over
            ``k_all``/``v_all``.
        text_row0: ``(k, v, bias)`` of the current row 0's text (see :func:`block_forward`).
        consts: the block's :class:`BlockConsts`.
    Returns ``(R, L, C)``.
    """
    attn = block.attn
    R, L, C = x.shape
    qkv = F.linear(_ln(block, x), attn.mat_qkv.weight, consts.qkv_bias)  # (R, L, 3C)
    k_new, v_new, k_all, v_all = kv(L, qkv.dtype)
    q = block_ops.qk_norm_rope(qkv, consts.sa_scale_mul, cos, sin, k_new, v_new, rope_first=True)
    x = block_ops.residual_gate(x, attend(attn, q, k_all, v_all))
    tk, tv, tb = text_row0  # (1, H, T, c), (1, H, T, c), (1, 1, 1, T): row 0's output (1, L, C) reaches every row
    x = block_ops.residual_gate(
        x, cross_attention(block.cross_attn, _ln(block, x[:1]), tk, tv, tb, consts.ca_scale_mul)
    )
    return block_ops.residual_gate(x, ffn_forward(block.ffn, _ln(block, x)))
