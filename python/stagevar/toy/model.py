"""The toy text-to-image model: configurations, builders, the training forward and its cost.

The model is made of this package's Infinity classes (:class:`~stagevar.models.infinity.transformer.Infinity` with
its bitwise head, shared AdaLN, cos-attention and 2D RoPE; the :class:`~stagevar.models.infinity.vae.BSQVAE`
decoder), a conv encoder for the tokenizer and a small learned text encoder whose features replace T5's.

Scales: Infinity's own 1:1 ``0.06M`` schedule, ``(1,1) (2,2) (4,4) (6,6) (8,8) (12,12) (16,16)`` (521 tokens), with a
4x tokenizer (patch 4): 16x16 tokens of 4x4 pixels make the 64x64 image. Being a built-in template, the session,
RoPE's grid and every StageVAR schedule take it as they are; its last three steps (8, 12, 16) are the fidelity
stage of the ``paper`` preset, as 40, 48, 64 are at 1024 pixels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ..models.infinity import rope
from ..models.infinity.blocks import (
    TextContext,
    ada_layer_norm,
    attention_pool,
    block_forward_upstream,
    embed_codes,
    head_modulation,
    pad_rows,
    shared_gss,
    text_to_ca,
)
from ..models.infinity.config import InfinityConfig, VAEConfig
from ..models.infinity.scales import get_scale_schedule, rope_grid
from ..models.infinity.session import model_blocks
from ..models.infinity.text import TextFeatures
from ..models.infinity.transformer import Infinity
from .data import SIZE
from .text import TextEncoder
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class ToyConfig:
    """Everything that fixes the toy model's shapes. ``pn`` picks the 1:1 schedule (``0.06M``: 7 scales)."""

    name: str
    infinity: InfinityConfig
    encoder_channels: tuple[int, ...]
    text_layers: int = 2
    text_heads: int = 2
    pn: str = "0.06M"

    def __post_init__(self):
        last = self.scales[-1]
        if last[0] * self.vae.patch_size != SIZE:
            raise ValueError(f"pn: the last scale {last} times patch {self.vae.patch_size} must give {SIZE} pixels")
        if self.infinity.apply_spatial_patchify:
            raise ValueError("infinity: the toy model does not use the 2x2 patchify")

    @property
    def vae(self) -> VAEConfig:
        return self.infinity.vae

    @property
    def scales(self) -> list[tuple[int, int]]:
        return get_scale_schedule(1.0, self.pn)

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> ToyConfig:
        inf = dict(data["infinity"])
        vae = dict(inf.pop("vae"))
        vae["ch_mult"] = tuple(vae["ch_mult"])
        infinity = InfinityConfig(**inf, vae=VAEConfig(**vae))
        rest = {k: v for k, v in data.items() if k not in ("infinity", "encoder_channels")}
        return ToyConfig(infinity=infinity, encoder_channels=tuple(data["encoder_channels"]), **rest)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of both stages (A: tokenizer, B: text encoder + transformer)."""

    steps_a: int
    steps_b: int
    batch_a: int
    batch_b: int
    lr_a: float = 2e-3
    lr_b: float = 1e-3
    warmup: float = 0.05  # fraction of each stage's steps with a linear warm-up; then cosine to 10%
    commit: float = 0.25  # weight of the commitment term ||z - sg(q)||^2
    cond_drop: float = 0.1  # fraction of captions replaced by the null text (classifier-free guidance)
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    seed: int = 0


# One block per chunk: 8 chunks as Infinity-2B/8B, so every preset (``paper-table7`` has 8 per-chunk ratios) runs.
# 160 wide, 4 heads of 40, FFN 512: 3.0M parameters in the blocks, 14 MB of fp32 weights in all (under 20 MB).
TOY64 = ToyConfig(
    "toy64",
    InfinityConfig(
        "toy64",
        depth=8,
        embed_dim=160,
        num_heads=4,
        block_chunks=8,
        text_channels=128,
        text_maxlen=16,
        vae=VAEConfig(codebook_dim=16, patch_size=4, ch_mult=(1, 1, 2), base_ch=32, num_res_blocks=1),
    ),
    encoder_channels=(32, 32, 64),
)

# The CI rehearsal: same data, scales, code paths and 8 chunks, a fraction of the width (seconds per stage on a CPU).
TOY64_REHEARSAL = ToyConfig(
    "toy64-rehearsal",
    InfinityConfig(
        "toy64-rehearsal",
        depth=8,
        embed_dim=32,
        num_heads=2,
        block_chunks=8,
        mlp_ratio=8.0,  # FFN rounds to multiples of 256 (upstream): 256 here, not 0
        text_channels=128,
        text_maxlen=16,
        vae=VAEConfig(codebook_dim=8, patch_size=4, ch_mult=(1, 1, 1), base_ch=24, num_res_blocks=0),
    ),
    encoder_channels=(24, 24, 24),
    text_layers=1,
)

TOY_CONFIGS = {c.name: c for c in (TOY64, TOY64_REHEARSAL)}

# The full run (sized for about 6 minutes on one H200, see ``estimate``) and the rehearsal's few steps.
TRAIN_FULL = TrainConfig(steps_a=2000, steps_b=4000, batch_a=128, batch_b=128)
TRAIN_REHEARSAL = TrainConfig(steps_a=3, steps_b=3, batch_a=2, batch_b=2, checkpoint_every=2)


@dataclass
class ToyModules:
    """The three trained parts: ``tokenizer`` (encoder + BSQVAE decoder), ``text`` encoder, ``infinity``."""

    config: ToyConfig
    tokenizer: Tokenizer
    text: TextEncoder
    infinity: Infinity
    extra: dict = field(default_factory=dict)

    def parts(self) -> dict[str, torch.nn.Module]:
        return {"tokenizer": self.tokenizer, "text": self.text, "infinity": self.infinity}


def build(config: ToyConfig, device="cpu", seed: int = 0) -> ToyModules:
    """Fresh modules of ``config`` on ``device``, initialised from ``seed`` (fp32, train mode)."""
    torch.manual_seed(seed)
    with torch.device(device):
        tokenizer = Tokenizer(config.vae, config.encoder_channels)
        text = TextEncoder(config.infinity.text_channels, config.text_layers, config.text_heads)
        infinity = Infinity(config.infinity)
    return ToyModules(config, tokenizer, text, infinity)


def null_rows(model: Infinity, text: TextFeatures, drop: torch.Tensor) -> TextFeatures:
    """``text`` with the rows where ``drop`` (bool ``(B,)``) replaced by the null text ``cfg_uncond[:len]`` (what a
    session's null rows see)."""
    parts, start = [], 0
    for b, n in enumerate(text.lens):
        parts.append(model.cfg_uncond[:n] if bool(drop[b]) else text.feats[start : start + n])
        start += n
    return TextFeatures(torch.cat(parts, 0), list(text.lens))


def train_logits(model: Infinity, text: TextFeatures, x_wo_prefix: torch.Tensor, scales) -> torch.Tensor:
    """The block-causal full-sequence forward with gradients (what ``teacher_forced_logits`` computes without them).

    ``text``: B prompts; ``x_wo_prefix`` fp32 ``(B, L - 1, d)``; returns fp32 logits ``(B, L, 2d)``."""
    device = model.pos_start.device
    kv = model.text_norm(text.feats.float())
    cond = attention_pool(model.text_proj_for_sos.ca, kv, text.lens)
    feats, mask = pad_rows(text_to_ca(model, kv), text.lens)
    ctx = TextContext(feats, list(text.lens), mask, {})
    gss = shared_gss(model, cond)
    B = text.batch
    x = torch.cat([cond.unsqueeze(1) + model.pos_start.expand(B, 1, -1), embed_codes(model, x_wo_prefix)], dim=1)
    level = torch.cat([torch.full((h * w,), i, device=device) for i, (h, w) in enumerate(scales)])
    x = x + model.lvl_embed.weight[level]
    grid = rope_grid(scales)
    hd = x.shape[-1] // model.config.num_heads
    cs = rope.gather_table(torch.cat([rope.scale_table(h, w, *grid, hd) for h, w in scales], dim=1).to(device), None)
    attn_mask = (level[:, None] >= level[None, :])[None, None]  # block-causal: scale i sees scales <= i
    for chunk in model_blocks(model):
        for block in chunk:
            x, _ = block_forward_upstream(block, x, gss, ctx, cs, None, attn_mask)
    # the head in upstream's unfused math (the fused norm op of the inference path is inference-only)
    scale, shift = head_modulation(model, cond)
    h = ada_layer_norm(x, scale, shift, getattr(model.head_nm, "norm_eps", 1e-6))
    return F.linear(h, model.head.weight.float(), model.head.bias.float())


def parameter_counts(config: ToyConfig) -> dict[str, int]:
    """Parameters of each part (built on the meta device)."""
    with torch.device("meta"):
        mods = build(config, device="meta")
    return {k: sum(p.numel() for p in m.parameters()) for k, m in mods.parts().items()}


def estimate(config: ToyConfig, train: TrainConfig, tflops: float = 30.0) -> dict:
    """Training FLOPs (forward + backward = 3x forward, matmuls and convolutions only) and the time at a sustained
    ``tflops`` TFLOP/s. The default 30 is an assumption (not a measurement), 3% of an H200's dense bf16 peak: a
    160-wide model with fp32 normalisation and RoPE is bound by memory traffic and kernel launches.

    Transformer forward per image: ``2 * block params * L`` plus attention ``4 * L^2 * C`` per block (the
    block-causal mask is dense in SDPA) plus the head; tokenizer: the convolutions at their resolutions (counted
    with a forward hook on one image)."""
    cfg = config.infinity
    L = sum(h * w for h, w in config.scales)
    mods = build(config)
    block_params = sum(p.numel() for p in mods.infinity.block_chunks.parameters())
    tr_fwd = 2 * block_params * L + cfg.depth * 4 * L * L * cfg.embed_dim + 2 * L * cfg.embed_dim * cfg.vocab
    conv_flops = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            conv_flops.append(2 * out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in mods.tokenizer.modules()]
    with torch.no_grad():
        z = mods.tokenizer.encoder(torch.zeros(1, 3, SIZE, SIZE))
        enc = sum(conv_flops)
        mods.tokenizer.vae.decoder(z)
        dec = sum(conv_flops) - enc
    for h in handles:
        h.remove()
    stage_a = 3 * (enc + dec) * train.batch_a * train.steps_a
    stage_b = (3 * tr_fwd + enc) * train.batch_b * train.steps_b  # the frozen encoder runs forward only
    total = stage_a + stage_b
    return {
        "tokens": L,
        "transformer_fwd_gflop_per_image": tr_fwd / 1e9,
        "tokenizer_fwd_gflop_per_image": (enc + dec) / 1e9,
        "stage_a_pflop": stage_a / 1e15,
        "stage_b_pflop": stage_b / 1e15,
        "assumed_tflops": tflops,
        "seconds": total / (tflops * 1e12),
    }


def config_json(config: ToyConfig, train: TrainConfig) -> str:
    return json.dumps({"model": config.to_json(), "train": asdict(train)}, indent=2, sort_keys=True)
