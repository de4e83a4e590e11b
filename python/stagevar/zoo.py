"""Models by name with random weights, and random text conditioning: what the demo and the benchmarks run.

Random weights give the real shapes and therefore the real cost; the images they draw are noise. Names:
``infinity-2b``, ``infinity-8b``, ``infinity-demo`` (small, for the CPU demo), ``infinity-tiny`` (tests),
``star-d30`` (STAR-1.7B at 1024px), ``star-tiny`` (tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .models.infinity.config import InfinityConfig, VAEConfig, get_config

# A small model of Infinity's architecture that generates at the full 1024x1024 schedule in seconds on a CPU:
# 8 chunks of two blocks (the 2B has 8 chunks of four), 128 wide, and a thin VAE decoder with the 2B's 16x
# upsampling, so that the transformer, not the decoder, dominates as it does on a GPU.
DEMO_INFINITY = InfinityConfig(
    "infinity_demo",
    depth=16,
    embed_dim=128,
    num_heads=4,
    block_chunks=8,
    text_channels=128,
    text_maxlen=64,
    vae=VAEConfig(codebook_dim=32, patch_size=16, ch_mult=(1, 1, 1, 1, 1), base_ch=32, num_res_blocks=1),
)

MODELS = ("infinity-2b", "infinity-8b", "infinity-demo", "infinity-tiny", "star-d30", "star-tiny")
ALIASES = {"star": "star-d30"}  # earlier spelling, still accepted


def canonical(name: str) -> str:
    """``name`` with earlier spellings mapped to the names of :data:`MODELS` (``star`` is ``star-d30``)."""
    return ALIASES.get(name, name)


def family_of(name: str) -> str:
    """``"infinity"`` or ``"star"`` for a model name of :data:`MODELS`."""
    name = canonical(name)
    if name not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {name!r}")
    return "star" if name.startswith("star") else "infinity"


@dataclass
class Built:
    """A model, its VAE, its family (``infinity``/``star``) and a factory of fresh generation sessions.

    ``new_session(batch, seed, **kw)`` draws random text conditioning (seeded) and starts a generation.
    """

    name: str
    family: str
    model: torch.nn.Module
    vae: torch.nn.Module
    new_session: Callable


_INFINITY_CONFIGS = {"infinity-2b": "infinity_2b", "infinity-8b": "infinity_8b", "infinity-tiny": "tiny"}


def _infinity_config(name: str) -> InfinityConfig:
    return get_config(_INFINITY_CONFIGS[name]) if name in _INFINITY_CONFIGS else DEMO_INFINITY


def random_infinity_text(cfg_channels: int, batch: int, seed: int, tokens: int = 32, device="cpu"):
    """Random T5-like features for ``batch`` prompts of ``tokens`` tokens (stand-in for flan-T5 outputs)."""
    from .models.infinity.text import TextFeatures

    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch * tokens, cfg_channels, generator=g) * 0.2
    return TextFeatures(feats.to(device), [tokens] * batch)


def random_star_text(batch: int, seed: int, width: int, device="cpu", tokens: int = 77):
    """Random CLIP-like conditioning: hidden ``(2B, 77, width)``, mask ``(2B, 77)``, pool ``(2B, width)``."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * batch, tokens, width, generator=g)
    mask = torch.zeros(2 * batch, tokens, dtype=torch.long)
    mask[:batch, :20] = 1  # prompts of 20 tokens
    mask[batch:, :2] = 1  # the empty prompt: start and end tokens
    pool = torch.randn(2 * batch, width, generator=g)
    return hidden.to(device), mask.to(device), pool.to(device)


def build(name: str, device="cpu", *, h_div_w: float = 1.0, pn: str = "1M", blocks_bf16: bool | None = None) -> Built:
    """Build model ``name`` with random weights on ``device``.

    Infinity: blocks in bf16 on CUDA (as upstream), everything else fp32; ``h_div_w``/``pn`` pick the scale schedule.
    STAR: fp32 weights; on CUDA the session runs under its autocast as upstream's fp16 scripts.
    """
    name = canonical(name)
    if name not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {name!r}")
    device = torch.device(device)
    torch.manual_seed(0)
    if name.startswith("infinity"):
        from .models.infinity import build_infinity, get_scale_schedule, new_session
        from .models.infinity.vae import BSQVAE

        cfg = _infinity_config(name)
        model = build_infinity(cfg, device=device)
        if blocks_bf16 if blocks_bf16 is not None else device.type == "cuda":
            model.blocks_to(torch.bfloat16)
        with torch.device(device):
            vae = BSQVAE(cfg.vae).eval().requires_grad_(False)
        schedule = get_scale_schedule(h_div_w, "0.06M" if name == "infinity-tiny" and pn == "1M" else pn)

        def infinity_session(batch: int = 1, seed: int = 0, **kw):
            text = random_infinity_text(cfg.text_channels, batch, seed, device=device)
            kw = {"cfg_list": 3.0, "tau_list": 0.5, "seeds": seed} | kw
            return new_session(model, vae, schedule, text, **kw)

        return Built(name, "infinity", model, vae, infinity_session)

    from .models.star import build_star, new_session

    model, vae = build_star("star-d30-1024" if name == "star-d30" else "tiny", device=device)
    model.requires_grad_(False)
    vae.requires_grad_(False)
    cross = model.blocks[0].cross_attn.mat_kv.weight.shape[1]

    def star_session(batch: int = 1, seed: int = 0, **kw):
        text = random_star_text(batch, seed, cross, device=device)
        kw = {"cfg": 4.5, "top_k": 600, "top_p": 0.8, "seeds": seed} | kw
        return new_session(model, vae, text, batch=batch, **kw)

    return Built(name, "star", model, vae, star_session)
