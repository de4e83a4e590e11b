"""Stand-ins for the CUDA-only / heavy imports of the official Infinity code, so it runs on CPU in tests.

Only modules that are not importable are replaced. ``flash_attn`` is implemented with torch SDPA: the official
``CrossAttention`` casts fp32 q/kv to bf16 before calling ``flash_attn_varlen_kvpacked_func``, so this stand-in
receives bf16 tensors and computes in bf16 like the real kernel (our side mimics it with ``ca_bf16=True``).
"""

from __future__ import annotations

import datetime
import importlib.util
import sys
import types

import torch
import torch.nn.functional as F
from torch import nn


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """q, k, v: (B, L, H, c) -> (B, L, H, c)."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=softmax_scale, is_causal=causal
    )
    return out.transpose(1, 2)


def flash_attn_varlen_kvpacked_func(
    q,
    kv,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """q: (Nq, H, c), kv: (Nk, 2, H, c), segments given by the cumulative lengths -> (Nq, H, c)."""
    out = torch.empty_like(q)
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for b in range(len(cq) - 1):
        qs = q[cq[b] : cq[b + 1]].transpose(0, 1)[None]  # (1, H, Lq, c)
        ks = kv[ck[b] : ck[b + 1], 0].transpose(0, 1)[None]
        vs = kv[ck[b] : ck[b + 1], 1].transpose(0, 1)[None]
        out[cq[b] : cq[b + 1]] = F.scaled_dot_product_attention(qs, ks, vs, scale=softmax_scale)[0].transpose(0, 1)
    return out


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


class DropPath(nn.Module):
    def __init__(self, drop_prob=0.0, scale_by_keep=True):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return x


def install() -> list[str]:
    """Insert the stand-ins that are needed; returns the names put in ``sys.modules`` (for :func:`uninstall`)."""
    before = set(sys.modules)
    done = []

    def missing(name):
        if name in sys.modules:
            return False
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    if missing("flash_attn"):
        fa = _module(
            "flash_attn",
            flash_attn_func=flash_attn_func,
            flash_attn_varlen_kvpacked_func=flash_attn_varlen_kvpacked_func,
        )
        fa.__path__ = []  # a package, so `flash_attn.ops.*` imports fail with ImportError (handled upstream)
        done.append("flash_attn")
    if missing("timm"):
        timm = _module("timm")
        models = _module("timm.models", register_model=lambda f: f)
        layers = _module("timm.models.layers", DropPath=DropPath, drop_path=lambda x, *a, **k: x)
        loss = _module("timm.loss", SoftTargetCrossEntropy=type("SoftTargetCrossEntropy", (nn.Module,), {}))
        timm.models, timm.loss, models.layers = models, loss, layers
        done.append("timm")
    if missing("pytz"):
        _module("pytz", timezone=lambda name: datetime.timezone.utc)
        done.append("pytz")
    if missing("torchvision"):
        tv = _module("torchvision")
        tv.transforms = _module("torchvision.transforms")
        done.append("torchvision")
    if missing("imageio"):
        _module("imageio")
        done.append("imageio")
    if missing("safetensors"):
        st = _module("safetensors")
        st.torch = _module("safetensors.torch", load_file=None)
        done.append("safetensors")
    return sorted(set(sys.modules) - before)


def uninstall(names) -> None:
    """Remove what :func:`install` added, so other official test modules (STAR) see a clean ``sys.modules``."""
    for name in names:
        sys.modules.pop(name, None)
