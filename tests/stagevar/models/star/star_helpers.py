"""Helpers of the STAR tests: tiny random models and text rows (CPU, fp32). A unique module name, so that
``from star_helpers import ...`` never picks up another folder's conftest."""

from __future__ import annotations

import torch

from stagevar.models.star import build_star

SHORT = (1, 2, 3, 4)


def make_text(batch: int, width: int = 64, seed: int = 0, same_prompt: bool = False, tokens: int = 77):
    """Random text rows for a session: hidden (2B, T, D), mask (2B, T) 0/1, pool (2B, D); prompt rows first."""
    g = torch.Generator().manual_seed(seed)
    n = 1 if same_prompt else batch
    hid = torch.randn(n, tokens, width, generator=g)
    pool = torch.randn(n, width, generator=g)
    lens = torch.randint(3, tokens // 2, (n,), generator=g)
    mask = (torch.arange(tokens)[None] < lens[:, None]).long()
    if same_prompt:
        hid, pool, mask = hid.expand(batch, -1, -1), pool.expand(batch, -1), mask.expand(batch, -1)
    e_hid = torch.randn(1, tokens, width, generator=g).expand(batch, -1, -1)
    e_pool = torch.randn(1, width, generator=g).expand(batch, -1)
    e_mask = (torch.arange(tokens)[None] < 2).long().expand(batch, -1)
    return (
        torch.cat([hid, e_hid]).contiguous(),
        torch.cat([mask, e_mask]).contiguous(),
        torch.cat([pool, e_pool]).contiguous(),
    )


def tiny(patch_nums=SHORT, depth=2, width=128, heads=4, seed=0):
    """A tiny STAR + VQ-VAE with random weights (scaled up so the blocks are far from the identity)."""
    torch.manual_seed(seed)
    model, vae = build_star("tiny", depth=depth, width=width, heads=heads, patch_nums=tuple(patch_nums))
    with torch.no_grad():
        for b in model.blocks:  # upstream-style init makes blocks nearly the identity; make them matter
            for p in (b.attn.proj.weight, b.cross_attn.proj.weight, b.ffn.fc2.weight):
                p.mul_(8)
            b.attn.q_bias.normal_(0, 0.1)
            b.attn.v_bias.normal_(0, 0.1)
            b.cross_attn.v_bias.normal_(0, 0.1)
        model.head_logits.weight.mul_(20)
    return model, vae
