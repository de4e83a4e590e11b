"""Tiny random-weight STAR-T2I models for the official-code tests: the official builder's arguments, seeded
random weights and random text conditioning (the ``star_official``/``star_pair`` fixtures are in ``conftest.py``)."""

import torch

PN = (1, 2, 3, 5, 6)
TINY = dict(V=64, Cvae=8, ch=32, depth=2, in_dim_cross=64)
KW = dict(cfg=4.5, top_k=20, top_p=0.9)


def official_kwargs(patch_nums, **over):
    """Keyword arguments of the official ``build_vae_var`` for a STAR-T2I model on CPU, ``over`` replacing any."""
    kw = dict(
        device="cpu",
        patch_nums=patch_nums,
        shared_aln=False,
        attn_l2_norm=True,
        enable_cross=True,
        flash_if_available=False,
        fused_if_available=True,
        rope_emb=True,
        lvl_emb=True,
        enable_logit_norm=True,
        enable_adaptive_norm=False,
        train_mode="none",
        rope_theta=10000,
        rope_norm=64.0,
        sample_from_idx=9,
    )
    kw.update(over)
    return kw


def randomise(module, seed):
    """Fill every parameter of ``module`` with seeded random values (``scale_mul_1H11`` in [0, 2))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("scale_mul_1H11"):
                p.copy_(torch.rand(p.shape, generator=g) * 2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.1))


def random_text(batch, width=64, seed=0):
    """(hidden ``(2B, 77, width)``, mask ``(2B, 77)``, pooled ``(2B, width)``): random text conditioning, CFG rows."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * batch, 77, width, generator=g)
    lens = torch.randint(2, 30, (2 * batch,), generator=g)
    mask = (torch.arange(77)[None] < lens[:, None]).long()
    pool = torch.randn(2 * batch, width, generator=g)
    return hidden, mask, pool
