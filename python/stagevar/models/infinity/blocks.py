"""Block math of Infinity as functions that read parameters by their official names.

They work on our modules and on the official ``CrossAttnBlock`` objects alike (``block.sa.mat_qkv.weight``,
``block.sa.q_bias``, ``block.ca.mat_q``, ``block.ffn.fc1``, ``block.ca_norm``, ``block.ada_gss`` ...), and keep no
state on the modules: the self-attention KV cache is passed in and returned.

Numerics follow upstream under bf16 autocast (``infinity/models/basic.py``: ``CrossAttnBlock``, ``SelfAttention``,
``CrossAttention``): AdaLN in fp32; linears in the weight dtype; cos-attention q/k normalised in fp32, RoPE in fp32,
then q/k cast to v's dtype for SDPA; ``sa_out * gamma1`` keeps the projection's dtype (upstream multiplies in place);
cross-attention output added in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import stagevar_kernels.block as block_ops

from .rope import apply_rope

_MAX_SCALE_MUL = math.log(100.0)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    dt = weight.dtype
    return F.linear(x.to(dt), weight, None if bias is None else bias.to(dt))


def ada_layer_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm without affine on ``x.float()``, then ``* (1 + scale) + shift`` (fp32, per-row scale/shift)."""
    x = x.float()
    return F.layer_norm(x, (x.shape[-1],), eps=eps).mul(scale.add(1)).add_(shift)


@dataclass
class TextContext:
    """Cross-attention text rows, padded: ``feats`` ``(R, Lt, D)`` (output of ``text_proj_for_ca``), ``lens`` per row,
    ``mask`` bool ``(R, 1, 1, Lt)`` (True = attend) or ``None`` when every row has ``Lt`` tokens.
    ``kv`` caches each block's projected K/V ``(R, H, Lt, c)`` by ``id(block)`` (computed once per generation)."""

    feats: torch.Tensor
    lens: list[int]
    mask: torch.Tensor | None
    kv: dict

    def select(self, rows: slice) -> TextContext:
        lens = self.lens[rows]
        lt = max(lens)
        feats = self.feats[rows, :lt]
        mask = None if min(lens) == lt else self.mask[rows, :, :, :lt]
        kv = {key: (k[rows, :, :lt], v[rows, :, :lt]) for key, (k, v) in self.kv.items()}
        return TextContext(feats, lens, mask, kv)


def pad_rows(packed: torch.Tensor, lens: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Packed ``(sum(lens), D)`` -> padded ``(R, max(lens), D)`` and bool mask ``(R, 1, 1, Lt)`` (None: no padding)."""
    r, lt = len(lens), max(lens)
    if min(lens) == lt:
        return packed.reshape(r, lt, -1), None
    lens_t = torch.tensor(lens, device=packed.device)
    valid = torch.arange(lt, device=packed.device)[None, :] < lens_t[:, None]  # (R, Lt)
    out = packed.new_zeros(r, lt, packed.shape[-1])
    out[valid] = packed
    return out, valid[:, None, None, :]


def text_kv(ca, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r, lt, _ = feats.shape
    h, c = ca.num_heads, ca.head_dim
    bias = torch.cat((ca.zero_k_bias, ca.v_bias))
    kv = _linear(feats, ca.mat_kv.weight, bias).view(r, lt, 2, h, c)
    return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)


def _attend_text(q, k, v, mask, scale, ca_bf16: bool):
    """``q`` (R, H, Lq, c) over padded text K/V; with ``ca_bf16`` an fp32 call runs in bf16 (upstream's flash_attn)."""
    if ca_bf16 and q.dtype == torch.float32:
        out = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), attn_mask=mask, scale=scale)
        return out.float()
    return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, scale=scale)


def attention_pool(pool_ca, packed: torch.Tensor, lens: list[int], ca_bf16: bool = False) -> torch.Tensor:
    """``text_proj_for_sos``: one learned query per head over each row's text tokens. ``packed`` is the
    ``text_norm`` output ``(sum(lens), Ct5)``; returns ``cond_BD`` ``(R, D)`` (dtype of the projection)."""
    feats, mask = pad_rows(packed, lens)
    k, v = text_kv(pool_ca, feats)
    r = feats.shape[0]
    q = pool_ca.mat_q.to(k.dtype)[None].expand(r, -1, -1, -1).transpose(1, 2)  # (R, H, 1, c)
    out = _attend_text(q, k, v, mask, 1.0 / math.sqrt(pool_ca.head_dim), ca_bf16)  # (R, H, 1, c)
    out = out.transpose(1, 2).reshape(r, -1)
    return _linear(out, pool_ca.proj.weight, pool_ca.proj.bias)


def qkv_bias(sa) -> torch.Tensor:
    """``[q_bias, 0, v_bias]`` ``(3C,)`` in ``mat_qkv``'s weight dtype (what the qkv linear adds)."""
    return torch.cat((sa.q_bias, sa.zero_k_bias, sa.v_bias)).to(sa.mat_qkv.weight.dtype)


def scale_mul(sa) -> torch.Tensor:
    """The per-head scale of the cos-attention's queries: fp32 ``(1, H, 1, 1)`` ``exp(min(scale_mul_1H11, ln 100))``."""
    return sa.scale_mul_1H11.clamp_max(_MAX_SCALE_MUL).float().exp()


@dataclass
class BlockConsts:
    """What a block reads at every step that depends only on the weights and the generation's rows, built once per
    generation: ``qkv_bias`` ``(3C,)`` (weight dtype), ``scale_mul`` fp32 ``(1, H, 1, 1)``, ``ada`` fp32
    ``(R, 1, 6, C)`` (``ada_gss + gss``: gamma1, gamma2, scale1, scale2, shift1, shift2), ``ca_norm_weight`` and
    ``ca_norm_bias`` fp32 ``(C,)``."""

    qkv_bias: torch.Tensor
    scale_mul: torch.Tensor
    ada: torch.Tensor
    ca_norm_weight: torch.Tensor
    ca_norm_bias: torch.Tensor

    @classmethod
    def of(cls, block, gss: torch.Tensor) -> BlockConsts:
        norm = block.ca_norm
        return cls(
            qkv_bias(block.sa), scale_mul(block.sa), block.ada_gss.float() + gss, norm.weight.float(), norm.bias.float()
        )

    def select(self, rows: slice) -> BlockConsts:
        return BlockConsts(self.qkv_bias, self.scale_mul, self.ada[rows], self.ca_norm_weight, self.ca_norm_bias)


KVReserve = Callable[[int, torch.dtype], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def self_attention(sa, h: torch.Tensor, rope_cs: torch.Tensor, cache=None, attn_mask=None):
    """Cos-attention with per-head scale and RoPE, in upstream's data flow (unfused, the cache grown by ``cat``).

    ``h`` ``(R, L, C)``; ``rope_cs`` from ``rope.gather_table``; ``cache`` ``(k, v)`` of earlier scales
    ``(R, H, Lc, c)`` or None. Returns ``(out (R, L, C), (k, v))``, the K/V being the cache extended by this call's
    keys (post-normalisation, post-RoPE, as upstream). The engine's :func:`attend_self` computes the same bits.
    """
    r, L, C = h.shape
    nh = sa.num_heads
    c = C // nh
    bias = torch.cat((sa.q_bias, sa.zero_k_bias, sa.v_bias))
    qkv = _linear(h, sa.mat_qkv.weight, bias).view(r, L, 3, nh, c).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q = F.normalize(q.float(), dim=-1, eps=1e-12).mul(scale_mul(sa))
    k = F.normalize(k.float(), dim=-1, eps=1e-12)
    q, k = apply_rope(q, k, rope_cs)
    dt = v.dtype
    q, k = q.to(dt), k.to(dt)
    if cache is not None:
        k = torch.cat((cache[0], k), dim=2)
        v = torch.cat((cache[1], v), dim=2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
    out = out.transpose(1, 2).reshape(r, L, C)
    return _linear(out, sa.proj.weight, sa.proj.bias), (k, v)


def attend_self(
    sa,
    h: torch.Tensor,
    rope_pair: tuple[torch.Tensor, torch.Tensor],
    kv: KVReserve | None,
    consts: BlockConsts,
    attn_mask=None,
) -> torch.Tensor:
    """The engine's self-attention: qkv linear, one fused q/k norm + RoPE + cast that writes this call's K/V straight
    into the cache, SDPA over the cache's views, output projection.

    Args:
        h: ``(R, L, C)`` the AdaLN output (in the qkv weight's dtype).
        rope_pair: ``(cos, sin)`` fp32 ``(L, c/2)`` or ``(R, L, c/2)`` (:func:`rope.gather_pair`).
        kv: ``kv(L, dtype) -> (k_new, v_new, k_all, v_all)`` (:meth:`stagevar.engine.StaticKV.reserve`), or None to
            attend to this call's own keys only (teacher forcing).
        consts: the block's :class:`BlockConsts`.
    Returns ``(R, L, C)`` in the projection's dtype.
    """
    r, L, C = h.shape
    nh = sa.num_heads
    qkv = _linear(h, sa.mat_qkv.weight, consts.qkv_bias)  # (R, L, 3C)
    dt = qkv.dtype
    if kv is None:
        k_new, v_new = qkv.new_empty(r, nh, L, C // nh), qkv.new_empty(r, nh, L, C // nh)
        k_all, v_all = k_new, v_new
    else:
        k_new, v_new, k_all, v_all = kv(L, dt)
    cos, sin = rope_pair
    q = block_ops.qk_norm_rope(qkv, consts.scale_mul, cos, sin, k_new, v_new, rope_first=False)  # (R, H, L, c)
    out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=attn_mask, scale=1.0)
    out = out.transpose(1, 2).reshape(r, L, C)
    return _linear(out, sa.proj.weight, sa.proj.bias)


def cross_attention(
    block, x: torch.Tensor, text: TextContext, ca_bf16: bool = False, consts: BlockConsts | None = None
) -> torch.Tensor:
    """``ca(ca_norm(x), text)``: ``x`` ``(R, L, C)`` -> ``(R, L, C)``. Text K/V of the block are cached in ``text``."""
    ca = block.ca
    key = id(block)
    if key not in text.kv:
        text.kv[key] = text_kv(ca, text.feats)
    k, v = text.kv[key]
    norm = block.ca_norm
    if consts is not None:  # one fused LayerNorm + affine + cast for mat_q
        xn = block_ops.norm_modulate(
            x, consts.ca_norm_weight, consts.ca_norm_bias, eps=norm.eps, out_dtype=ca.mat_q.weight.dtype
        )
    else:
        xn = F.layer_norm(x.float(), (x.shape[-1],), norm.weight.float(), norm.bias.float(), norm.eps)
    r, L, C = x.shape
    q = _linear(xn, ca.mat_q.weight, ca.mat_q.bias).view(r, L, ca.num_heads, ca.head_dim).transpose(1, 2)
    out = _attend_text(q, k, v, text.mask, 1.0 / math.sqrt(ca.head_dim), ca_bf16)
    out = out.transpose(1, 2).reshape(r, L, C)
    return _linear(out, ca.proj.weight, ca.proj.bias)


def ffn(f, h: torch.Tensor) -> torch.Tensor:
    """``fc2(gelu_tanh(fc1(h)))`` in the weights' dtype."""
    return _linear(F.gelu(_linear(h, f.fc1.weight, f.fc1.bias), approximate="tanh"), f.fc2.weight, f.fc2.bias)


def block_forward_upstream(block, x, gss, text: TextContext, rope_cs, cache=None, attn_mask=None, ca_bf16=False):
    """One ``CrossAttnBlock`` in upstream's data flow (unfused; the self-attention cache grown by ``cat``): ``x``
    ``(R, L, C)``, ``gss`` the shared AdaLN output ``(R, 1, 6, C)`` fp32. Returns ``(x_out (R, L, C), (k, v))`` with
    the K/V extended as in :func:`self_attention`. :func:`block_forward` computes the same bits."""
    eps = getattr(block, "norm_eps", 1e-6)
    g1, g2, s1, s2, sh1, sh2 = (block.ada_gss.float() + gss).unbind(2)
    sa_out, kv = self_attention(block.sa, ada_layer_norm(x, s1, sh1, eps), rope_cs, cache, attn_mask)
    x = x + sa_out.mul_(g1)  # in place, as upstream: the product keeps sa_out's dtype
    ca_gamma = getattr(block, "ca_gamma", 1.0)
    x = x + cross_attention(block, x, text, ca_bf16).float().mul_(ca_gamma)
    x = x + ffn(block.ffn, ada_layer_norm(x, s2, sh2, eps)).mul(g2)
    return x, kv


def block_forward(
    block,
    x: torch.Tensor,
    text: TextContext,
    rope_pair: tuple[torch.Tensor, torch.Tensor],
    kv: KVReserve | None,
    consts: BlockConsts,
    attn_mask=None,
    ca_bf16: bool = False,
) -> torch.Tensor:
    """One ``CrossAttnBlock`` on the engine: fused AdaLN (``norm_modulate``), q/k norm + RoPE + KV write
    (``qk_norm_rope``) and gated residuals (``residual_gate``); the same bits as :func:`block_forward_upstream`.

    Args:
        x: ``(R, L, C)`` the fp32 residual stream (bf16/fp16 in an all-half model).
        text: the cross-attention text rows with every block's K/V.
        rope_pair, kv: as :func:`attend_self`.
        consts: the block's :class:`BlockConsts` (``ada`` = ``ada_gss + gss`` of the rows).
    Returns ``(R, L, C)``.
    """
    eps = getattr(block, "norm_eps", 1e-6)
    g1, g2, s1, s2, sh1, sh2 = consts.ada.unbind(2)
    qkv_dt = block.sa.mat_qkv.weight.dtype
    h = block_ops.norm_modulate(x, scale=s1, shift=sh1, eps=eps, out_dtype=qkv_dt)
    sa_out = attend_self(block.sa, h, rope_pair, kv, consts, attn_mask)
    x = block_ops.residual_gate(x, sa_out, g1, round_to_y=True)  # upstream: x + sa_out.mul_(g1)
    ca_out = cross_attention(block, x, text, ca_bf16, consts)
    ca_gamma = getattr(block, "ca_gamma", 1)
    if isinstance(ca_gamma, (int, float)):
        x = block_ops.residual_gate(x, ca_out, scale=float(ca_gamma))  # x + ca_out.float() * ca_gamma
    else:  # a learned (C,) layer scale, in its own dtype as upstream
        x = x + ca_out.float().mul_(ca_gamma)
    h = block_ops.norm_modulate(x, scale=s2, shift=sh2, eps=eps, out_dtype=block.ffn.fc1.weight.dtype)
    return block_ops.residual_gate(x, ffn(block.ffn, h), g2)  # x + ffn(h).mul(g2)


def text_to_ca(model, kv: torch.Tensor) -> torch.Tensor:
    """``text_proj_for_ca``: Linear, GELU(tanh), Linear on the normalised text ``(N, Ct5)`` -> ``(N, D)``."""
    l1, l2 = model.text_proj_for_ca[0], model.text_proj_for_ca[2]
    return _linear(F.gelu(_linear(kv, l1.weight, l1.bias), approximate="tanh"), l2.weight, l2.bias)


def shared_gss(model, cond_BD: torch.Tensor) -> torch.Tensor:
    """``shared_ada_lin`` in fp32 (upstream disables autocast): ``(R, D)`` -> ``(R, 1, 6, C)``."""
    lin = model.shared_ada_lin[-1]
    with torch.autocast(device_type=cond_BD.device.type, enabled=False):
        out = F.linear(F.silu(cond_BD.float()), lin.weight.float(), lin.bias.float())
    return out.reshape(out.shape[0], 1, 6, -1).contiguous()


def embed_codes(model, codes: torch.Tensor) -> torch.Tensor:
    """``word_embed``: code vectors ``(B, L, d_vae)`` -> ``(B, L, C)`` (the weight's dtype, or autocast's)."""
    return _linear(codes, model.word_embed.weight, model.word_embed.bias)


def head_modulation(model, cond_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``head_nm``'s AdaLN scale and shift from ``cond_BD`` ``(R, D)``: fp32 ``(R, 1, C)`` each (autocast off)."""
    lin = model.head_nm.ada_lin[-1]
    with torch.autocast(device_type=cond_BD.device.type, enabled=False):
        ss = F.linear(F.silu(cond_BD.float()), lin.weight.float(), lin.bias.float())
    return ss.view(-1, 1, 2, ss.shape[-1] // 2).unbind(2)


def head_logits(model, x: torch.Tensor, cond_BD: torch.Tensor | None = None, modulation=None) -> torch.Tensor:
    """``head(head_nm(x, cond_BD))`` in fp32 (upstream ``get_logits``): ``(R, L, C)`` -> ``(R, L, V)``.
    ``modulation``: :func:`head_modulation` of the rows' ``cond_BD``, when already computed."""
    nm = model.head_nm
    scale, shift = modulation if modulation is not None else head_modulation(model, cond_BD)
    eps = getattr(nm, "norm_eps", 1e-6)
    h = block_ops.norm_modulate(x, scale=scale, shift=shift, eps=eps)  # fp32, as upstream's AdaLN before the head
    return F.linear(h, model.head.weight.float(), model.head.bias.float())
