"""STAR as a model family: its presets, how to recognise, load and start a STAR model, and its
:class:`~stagevar.models.family.Family` record (listed in :data:`stagevar.families.FAMILIES`)."""

from __future__ import annotations

import torch

from ..family import PAPER_RANK_RATIO, Encode, Family
from . import build_star, load_star  # the package's builders (star/__init__.py)
from .official import official_call
from .session import new_session
from .text import load_clip_text_encoder

# STAR (paper, section 4.1 and D.1): the last step at 0.176 with null guidance, one projection per block.
PRESETS = {
    "vanilla": {"projection": "none"},
    "paper": {"rank_ratios": [PAPER_RANK_RATIO], "guidance": "null"},
    "skip-only": {"rank_ratios": [0.0], "projection": "none"},
    "cfg-drop-only": {"rank_ratios": [1.0], "guidance": "null", "projection": "none"},
}

STAR_CFG = 4.5


def _is_star(model) -> bool:
    blocks = getattr(model, "blocks", None)
    return blocks is not None and len(blocks) > 0 and hasattr(blocks[0], "cross_attn") and hasattr(model, "head_logits")


def _star_load(config: str, checkpoint, vae_path, text_encoder, device: torch.device, negative_prompt=None):
    model, vae = load_star(checkpoint, vae_path, config, device=device)  # no random init of 1.7B
    clip = load_clip_text_encoder(text_encoder, device=device)
    negative = negative_prompt or ""  # STAR's null rows encode the empty prompt
    return model, vae, lambda prompts: clip.encode(list(prompts) + [negative] * len(prompts))


def _star_sessions(model, vae, encode: Encode, *, h_div_w: float, pn: str, cfg: float, tau: float, negative_prompt):
    # the negative prompt is part of STAR's encoded rows (see _star_load); tau is Infinity's
    return lambda prompts, seeds: new_session(model, vae, encode(prompts), batch=len(prompts), seeds=seeds, cfg=cfg)


def random_star_text(batch: int, seed: int, width: int, device="cpu", tokens: int = 77):
    """Random CLIP-like conditioning: hidden ``(2B, 77, width)``, mask ``(2B, 77)``, pool ``(2B, width)``."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * batch, tokens, width, generator=g)
    mask = torch.zeros(2 * batch, tokens, dtype=torch.long)
    mask[:batch, :20] = 1  # prompts of 20 tokens
    mask[batch:, :2] = 1  # the empty prompt: start and end tokens
    pool = torch.randn(2 * batch, width, generator=g)
    return hidden.to(device), mask.to(device), pool.to(device)


def _star_build_random(spec: str, device: torch.device, *, h_div_w: float, pn: str, blocks_bf16: bool | None):
    # fp32 weights; on CUDA the session runs under its autocast, as upstream's fp16 scripts
    model, vae = build_star(spec, device=device)
    model.requires_grad_(False)
    vae.requires_grad_(False)
    cross = model.blocks[0].cross_attn.mat_kv.weight.shape[1]

    def random_session(batch: int = 1, seed: int = 0, **kw):
        text = random_star_text(batch, seed, cross, device=device)
        kw = {"cfg": STAR_CFG, "top_k": 600, "top_p": 0.8, "seeds": seed} | kw
        return new_session(model, vae, text, batch=batch, **kw)

    return model, vae, random_session


def _square_1024(h_div_w: float, pn: str) -> None:
    if h_div_w != 1.0 or pn != "1M":
        raise ValueError("h_div_w/pn: STAR generates square 1024x1024 images only")


def _open_clip_h(transformers) -> tuple:
    """A CLIP text model 1024 wide (OpenCLIP-H's shape), 77 tokens; the prompt and the null prompt rows."""
    config = transformers.CLIPTextConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=23,
        num_attention_heads=16,
        max_position_embeddings=77,
    )
    return transformers.CLIPTextModel(config), 77, 2


FAMILY = Family(
    name="star",
    title="STAR",
    structure="blocks with cross_attn, head_logits",
    is_model=_is_star,
    official_call=official_call,
    default_unit="block",
    presets=PRESETS,
    default_cfg=STAR_CFG,
    text_encoder="CLIP",
    checkpoints={"star-d30": "star-d30-1024"},
    random_models={"star-d30": "star-d30-1024", "star-tiny": "tiny"},
    aliases={"star": "star-d30"},
    load=_star_load,
    sessions=_star_sessions,
    build_random=_star_build_random,
    check_size=_square_1024,
    random_text_encoder=_open_clip_h,
    upstream_engine=False,
)
