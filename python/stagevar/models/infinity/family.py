"""Infinity as a model family: its presets, how to recognise, load and start an Infinity model, and its
:class:`~stagevar.models.family.Family` record (listed in :data:`stagevar.families.FAMILIES`)."""

from __future__ import annotations

import torch

from ..family import PAPER_RANK_RATIO, Encode, Family
from .config import InfinityConfig, VAEConfig, get_config
from .loader import load_infinity
from .official import official_call
from .scales import get_scale_schedule
from .session import new_session
from .text import TextFeatures, encode_prompts, load_t5
from .transformer import build_infinity
from .vae import BSQVAE

TABLE7_RANK_RATIOS = (0.016, 0.136, 0.210, 0.250, 0.256, 0.198, 0.157, 0.191)  # block_chunks.0..7 at 40x40

# Presets: StageSchedule fields in their JSON form (``unit`` defaults to the family's ``default_unit``). They are
# data rather than StageSchedule objects: the models never import the method (stagevar.schedule builds them).
PRESETS = {
    "vanilla": {"projection": "none"},
    # Paper, section 4.1: the last three steps (40, 48, 64 at 1024px) with ratios 0.176 / 0 / 0, null guidance,
    # one projection per block chunk.
    "paper": {"rank_ratios": [PAPER_RANK_RATIO, 0.0, 0.0], "guidance": "null"},
    "skip-only": {"rank_ratios": [1.0, 0.0, 0.0], "projection": "none"},
    "cfg-drop-only": {"rank_ratios": [1.0, 1.0, 1.0], "guidance": "null", "projection": "none"},
    # The paper's per-chunk ranks at alpha = 0.96 for the 40x40 step (Table 7, Infinity-2B, GenEval prompts): their
    # mean is the 17.6% of the uniform preset. Needs 8 chunks (Infinity-2B and -8B).
    "paper-table7": {"rank_ratios": [list(TABLE7_RANK_RATIOS), 0.0, 0.0], "guidance": "null"},
}

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

INFINITY_CFG = 3.0


def _is_infinity(model) -> bool:
    return hasattr(model, "block_chunks") and hasattr(model, "text_proj_for_sos") and hasattr(model, "head_nm")


def _infinity_load(config: str, checkpoint, vae_path, text_encoder, device: torch.device, negative_prompt=None):
    model, vae = load_infinity(config, checkpoint, vae_path, device=device)
    # flan-T5 in fp16 on a GPU, as upstream's scripts; fp32 on a CPU
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    tokenizer, encoder = load_t5(text_encoder, device=device, dtype=dtype)
    return model, vae, lambda prompts: encode_prompts(tokenizer, encoder, prompts)


def _infinity_sessions(model, vae, encode: Encode, *, h_div_w: float, pn: str, cfg: float, tau: float, negative_prompt):
    scales = get_scale_schedule(h_div_w, pn)
    negative = encode([negative_prompt]) if negative_prompt else None  # else the model's cfg_uncond rows
    return lambda prompts, seeds: new_session(
        model, vae, scales, encode(prompts), negative_text=negative, seeds=seeds, cfg_list=cfg, tau_list=tau
    )


def random_infinity_text(cfg_channels: int, batch: int, seed: int, tokens: int = 32, device="cpu"):
    """Random T5-like features for ``batch`` prompts of ``tokens`` tokens (stand-in for flan-T5 outputs)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch * tokens, cfg_channels, generator=g) * 0.2
    return TextFeatures(feats.to(device), [tokens] * batch)


def _infinity_build_random(spec, device: torch.device, *, h_div_w: float, pn: str, blocks_bf16: bool | None):
    config, full_pn = spec
    cfg = config if isinstance(config, InfinityConfig) else get_config(config)
    model = build_infinity(cfg, device=device)
    if blocks_bf16 if blocks_bf16 is not None else device.type == "cuda":  # bf16 blocks on CUDA, as upstream
        model.blocks_to(torch.bfloat16)
    with torch.device(device):
        vae = BSQVAE(cfg.vae).eval().requires_grad_(False)
    scales = get_scale_schedule(h_div_w, full_pn if pn == "1M" else pn)

    def random_session(batch: int = 1, seed: int = 0, **kw):
        text = random_infinity_text(cfg.text_channels, batch, seed, device=device)
        kw = {"cfg_list": INFINITY_CFG, "tau_list": 0.5, "seeds": seed} | kw
        return new_session(model, vae, scales, text, **kw)

    return model, vae, random_session


def _any_size(h_div_w: float, pn: str) -> None:
    """Infinity draws every aspect-ratio template and size (the nearest template is used)."""


def _flan_t5_xl(transformers) -> tuple:
    """flan-T5-XL's encoder (1.2B parameters), prompts padded to 512 tokens as upstream."""
    config = transformers.T5Config(
        d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, feed_forward_proj="gated-gelu", vocab_size=32128
    )
    return transformers.T5EncoderModel(config), 512, 1


FAMILY = Family(
    name="infinity",
    title="Infinity",
    structure="block_chunks, text_proj_for_sos, head_nm",
    is_model=_is_infinity,
    official_call=official_call,
    default_unit="chunk",
    presets=PRESETS,
    default_cfg=INFINITY_CFG,
    text_encoder="flan-T5-XL",
    checkpoints={"infinity-2b": "infinity_2b", "infinity-8b": "infinity_8b"},
    # (config, the scale schedule used for pn "1M", every command's default): the tiny model runs 0.06M
    random_models={
        "infinity-2b": ("infinity_2b", "1M"),
        "infinity-8b": ("infinity_8b", "1M"),
        "infinity-demo": (DEMO_INFINITY, "1M"),
        "infinity-tiny": ("tiny", "0.06M"),
    },
    aliases={},
    load=_infinity_load,
    sessions=_infinity_sessions,
    build_random=_infinity_build_random,
    check_size=_any_size,
    random_text_encoder=_flan_t5_xl,
    upstream_engine=True,
)
