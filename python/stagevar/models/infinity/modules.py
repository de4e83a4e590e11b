"""Parameter containers of Infinity with the official module names and shapes (no forward logic here: the math lives
in ``blocks.py`` and reads parameters by these names, so it also runs on the official classes)."""

from __future__ import annotations

import math

import torch
from torch import nn


class TextNorm(nn.Module):
    """RMSNorm over T5 features (upstream ``FastRMSNorm``): ``weight`` ``(Ct5,)``."""

    def __init__(self, C: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True).add_(self.eps)) * self.weight).to(x.dtype)


class SelfAttention(nn.Module):
    """``mat_qkv`` (no bias), ``q_bias``/``v_bias``, buffer ``zero_k_bias``, ``scale_mul_1H11`` (1,H,1,1), ``proj``."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())
        self.mat_qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim))
        self.proj = nn.Linear(embed_dim, embed_dim)


class CrossAttention(nn.Module):
    """``mat_q`` (Linear, or a ``(1, H, c)`` Parameter when pooling), ``mat_kv`` (no bias), ``v_bias``,
    buffer ``zero_k_bias``, ``proj``."""

    def __init__(self, embed_dim: int, kv_dim: int, num_heads: int, for_attn_pool: bool = False):
        super().__init__()
        self.for_attn_pool = for_attn_pool
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        if for_attn_pool:
            q = torch.empty(1, num_heads, self.head_dim)
            nn.init.trunc_normal_(q, std=math.sqrt(1 / embed_dim / 3))
            self.mat_q = nn.Parameter(q)
        else:
            self.mat_q = nn.Linear(embed_dim, embed_dim)
        self.mat_kv = nn.Linear(kv_dim, 2 * embed_dim, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim))
        self.proj = nn.Linear(embed_dim, embed_dim)


class TextAttentivePool(nn.Module):
    """``text_proj_for_sos``: ``.ca`` is a pooling :class:`CrossAttention` (heads of 128, or 64 when D > 4096)."""

    def __init__(self, Ct5: int, D: int):
        super().__init__()
        head_dim = 64 if D > 4096 else 128
        self.ca = CrossAttention(D, Ct5, Ct5 // head_dim, for_attn_pool=True)


class FFN(nn.Module):
    def __init__(self, C: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(C, hidden)
        self.fc2 = nn.Linear(hidden, C)


class CrossAttnBlock(nn.Module):
    """One transformer block: ``sa``, ``ca``, ``ffn``, ``ca_norm`` (affine LayerNorm), ``ada_gss`` (1, 1, 6, C)."""

    def __init__(self, C: int, num_heads: int, ffn_hidden: int, eps: float = 1e-6):
        super().__init__()
        self.C = C
        self.norm_eps = eps
        self.sa = SelfAttention(C, num_heads)
        self.ca = CrossAttention(C, C, num_heads)
        self.ffn = FFN(C, ffn_hidden)
        self.ca_norm = nn.LayerNorm(C, eps=eps)
        self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, C) / C**0.5)
        self.ca_gamma = 1.0


class MultipleLayers(nn.Module):
    """One block chunk: ``.module`` is the ModuleList of its blocks (keys ``block_chunks.i.module.j.*``)."""

    def __init__(self, blocks):
        super().__init__()
        self.module = nn.ModuleList(blocks)


class SharedAdaLin(nn.Linear):
    """``shared_ada_lin.1``: Linear(D, 6C) whose output is viewed ``(B, 1, 6, C)``."""

    def forward(self, cond_BD: torch.Tensor) -> torch.Tensor:
        return super().forward(cond_BD).reshape(-1, 1, 6, self.weight.shape[0] // 6)


class AdaLNBeforeHead(nn.Module):
    """``head_nm``: ``ada_lin = Sequential(SiLU, Linear(D, 2C))``."""

    def __init__(self, C: int, D: int, eps: float = 1e-6):
        super().__init__()
        self.C, self.norm_eps = C, eps
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * C))
