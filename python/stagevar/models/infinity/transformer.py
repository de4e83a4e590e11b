"""The Infinity transformer with the official module names and parameter shapes (``block_chunks.i.module.j.*`` ...).

Generation goes through :class:`~stagevar.models.infinity.session.InfinitySession` (``Infinity.new_session``);
``autoregressive_infer_cfg`` keeps the official signature and return format on top of it, so official scripts
(``gen_one_img``) run on this class. ``teacher_forced_logits`` is the full-sequence forward with the block-causal mask
(the test oracle); like the session it reads parameters by name and so also runs on official objects.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common import run_plain
from . import rope
from .blocks import (
    TextContext,
    attention_pool,
    block_forward_upstream,
    embed_codes,
    head_logits,
    pad_rows,
    shared_gss,
    text_to_ca,
)
from .config import InfinityConfig, get_config
from .modules import AdaLNBeforeHead, CrossAttnBlock, MultipleLayers, SharedAdaLin, TextAttentivePool, TextNorm
from .official import official_call
from .scales import normalize_schedule, rope_grid
from .session import InfinitySession, model_blocks, new_session
from .text import TextFeatures


class Infinity(nn.Module):
    """Infinity text-to-image transformer (bitwise labels, shared AdaLN, cos-attention, 2D RoPE).

    ``ca_bf16 = False``: cross-attention stays fp32 in :func:`~.official.official_call` (objects of the official class,
    which lack the attribute, run it in bf16 as their ``flash_attn`` call does).
    """

    ca_bf16 = False

    def __init__(self, cfg: InfinityConfig | str):
        super().__init__()
        cfg = get_config(cfg) if isinstance(cfg, str) else cfg
        self.config = cfg
        C = self.C = self.D = cfg.embed_dim
        self.depth, self.num_heads = cfg.depth, cfg.num_heads
        self.apply_spatial_patchify = int(cfg.apply_spatial_patchify)
        self.d_vae, self.V, self.Ct5 = cfg.d_vae, cfg.vocab, cfg.text_channels

        self.pos_start = nn.Parameter(torch.empty(1, 1, C))
        nn.init.trunc_normal_(self.pos_start, std=(1 / C / 3) ** 0.5)
        # upstream: trunc_normal(std 1.2) from a CPU generator seeded 0, divided by sqrt(Ct5)
        unc = torch.empty(cfg.text_maxlen, cfg.text_channels, device="cpu")
        nn.init.trunc_normal_(unc, std=1.2, generator=torch.Generator("cpu").manual_seed(0))
        self.cfg_uncond = nn.Parameter((unc / cfg.text_channels**0.5).to(self.pos_start.device))
        self.norm0_cond = nn.Identity()
        self.text_norm = TextNorm(cfg.text_channels, eps=cfg.norm_eps)
        self.text_proj_for_sos = TextAttentivePool(cfg.text_channels, C)
        self.text_proj_for_ca = nn.Sequential(
            nn.Linear(cfg.text_channels, C), nn.GELU(approximate="tanh"), nn.Linear(C, C)
        )
        self.lvl_embed = nn.Embedding(cfg.num_levels, C)
        nn.init.trunc_normal_(self.lvl_embed.weight, std=(1 / C / 3) ** 0.5)
        self.norm0_ve = nn.Identity()
        self.word_embed = nn.Linear(cfg.d_vae, C)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), SharedAdaLin(C, 6 * C))
        self.head_nm = AdaLNBeforeHead(C, C, eps=cfg.norm_eps)
        self.head = nn.Linear(C, cfg.vocab)
        blocks = [CrossAttnBlock(C, cfg.num_heads, cfg.ffn_hidden, cfg.norm_eps) for _ in range(cfg.depth)]
        n = cfg.blocks_per_chunk
        self.block_chunks = nn.ModuleList(MultipleLayers(blocks[i * n : (i + 1) * n]) for i in range(cfg.block_chunks))
        self.unregistered_blocks = blocks  # plain list, as upstream: global block index -> block

    # -- dtype ---------------------------------------------------------------------------------------------------
    def blocks_to(self, dtype: torch.dtype) -> Infinity:
        """Cast the transformer blocks only (upstream's ``bf16=1``: blocks bf16, the rest fp32)."""
        for chunk in self.block_chunks:
            chunk.to(dtype)
        return self

    # -- generation ----------------------------------------------------------------------------------------------
    def new_session(self, vae, scale_schedule, text, **kwargs) -> InfinitySession:
        """See :func:`stagevar.models.infinity.session.new_session` for the keyword arguments."""
        return new_session(self, vae, scale_schedule, text, **kwargs)

    @torch.no_grad()
    def autoregressive_infer_cfg(self, *args, **kwargs):
        """The official entry point with upstream's signature (``vae, scale_schedule, label_B_or_BLT, B, ...``);
        see :func:`stagevar.models.infinity.official.official_call` for what is supported. Returns
        ``([], [], img)``, ``img`` uint8 ``(B, H, W, 3)`` in **BGR** order as upstream."""
        return official_call(self, run_plain, *args, **kwargs)


def autoregressive_infer_cfg(model, *args, **kwargs):
    """Upstream ``autoregressive_infer_cfg`` (same arguments) on any Infinity object, through the plain loop."""
    return official_call(model, run_plain, *args, **kwargs)


@torch.no_grad()
def teacher_forced_logits(model, text, x_wo_prefix: torch.Tensor, scale_schedule, ca_bf16: bool = False):
    """Full-sequence forward with the block-causal mask (upstream training ``forward``, no condition dropout).

    Args:
        text: :class:`TextFeatures` (or upstream tuple) with one prompt per row ``R`` (CFG: prompt rows then null rows).
        x_wo_prefix: ``(R, L - 1, d_vae)`` the code inputs of scales 1.. concatenated (what the sampler feeds).
        scale_schedule: the scales; ``L`` = total tokens.
    Returns fp32 logits ``(R, L, V)``.
    """
    text = TextFeatures.from_any(text)
    sched = normalize_schedule(scale_schedule)
    device = model.pos_start.device
    kv = model.text_norm(text.feats.to(device).float())
    cond = attention_pool(model.text_proj_for_sos.ca, kv, text.lens, ca_bf16)
    feats, mask = pad_rows(text_to_ca(model, kv), text.lens)
    ctx = TextContext(feats, list(text.lens), mask, {})
    gss = shared_gss(model, cond)
    R = text.batch
    x = torch.cat(
        [cond.unsqueeze(1) + model.pos_start.expand(R, 1, -1), embed_codes(model, x_wo_prefix.to(device).float())],
        dim=1,
    )
    level = torch.cat([torch.full((h * w,), i, device=device) for i, (h, w) in enumerate(sched)])
    if x.shape[1] != level.numel():
        raise ValueError(f"x_wo_prefix: expected {level.numel() - 1} tokens for the schedule, got {x.shape[1] - 1}")
    x = x + model.lvl_embed.weight[level]
    grid = rope_grid(sched)
    hd = x.shape[-1] // model_blocks(model)[0][0].sa.num_heads
    table = torch.cat([rope.scale_table(h, w, *grid, hd) for h, w in sched], dim=1).to(device)
    cs = rope.gather_table(table, None)
    attn_mask = (level[:, None] >= level[None, :])[None, None]  # block-causal: scale i sees scales <= i
    for chunk in model_blocks(model):
        for block in chunk:
            x, _ = block_forward_upstream(block, x, gss, ctx, cs, None, attn_mask, ca_bf16)
    return head_logits(model, x, cond)


def build_infinity(
    cfg: InfinityConfig | str, device=None, dtype: torch.dtype | None = None, blocks_dtype: torch.dtype | None = None
) -> Infinity:
    """Build (random weights, initialised directly on ``device``; ``"meta"`` for shapes only) in eval mode.
    ``dtype`` casts everything, ``blocks_dtype`` only the blocks (upstream: bf16 blocks on CUDA)."""
    with torch.device(device if device is not None else "cpu"):
        model = Infinity(cfg)
    model.eval().requires_grad_(False)
    if dtype is not None:
        model.to(dtype)
    if blocks_dtype is not None:
        model.blocks_to(blocks_dtype)
    return model
