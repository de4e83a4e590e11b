"""The STAR transformer (``models/var_drop.py::VAR`` built as in ``sample.py``: ``enable_adaptive_norm=False``).

Parameter names and shapes are the official ones, so the ``["trainer"]["var_wo_ddp"]`` state dict of the
non-sampler checkpoint loads with ``strict=True``. ``class_emb`` is unused and kept only for that. Generation goes
through :mod:`stagevar.models.star.session`; :func:`teacher_forced_logits` is the full-sequence oracle.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..common import run_plain
from .blocks import STARBlock, block_forward, text_bias
from .config import STARConfig, model_geometry
from .official import official_call
from .rope import rope_tables
from .session import STARSession, new_session


class STAR(nn.Module):
    """STAR text-to-image transformer.

    Attributes (official names): ``word_embed`` Linear(Cvae, C), ``class_emb`` Embedding(1001, C) (unused),
    ``pos_start`` (1, 1, C), ``lvl_embed`` Embedding(S, C), ``blocks`` (depth x :class:`STARBlock`),
    ``head_logits`` Linear(C, V), ``encoder_proj`` Linear(1024, C), ``logit_norm`` LayerNorm(C, no affine).
    ``vae_proxy``: a 1-tuple holding the VQ-VAE (not a submodule, as upstream), used by
    :meth:`autoregressive_infer_cfg`.
    """

    def __init__(self, config: STARConfig | None = None, vae: nn.Module | None = None):
        super().__init__()
        cfg = config or STARConfig()
        self.config = cfg
        C = cfg.width
        self.C = self.D = C
        self.Cvae, self.V = cfg.cvae, cfg.vocab_size
        self.depth, self.num_heads = cfg.depth, cfg.heads
        self.patch_nums = tuple(cfg.patch_nums)
        self.L = sum(pn * pn for pn in self.patch_nums)
        self.first_l = self.patch_nums[0] ** 2
        self.rope_theta, self.rope_norm = cfg.rope_theta, cfg.rope_norm
        self.num_classes = cfg.num_classes
        std = math.sqrt(1 / C / 3)

        self.word_embed = nn.Linear(cfg.cvae, C)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, C))
        self.lvl_embed = nn.Embedding(len(self.patch_nums), C)
        self.blocks = nn.ModuleList(
            STARBlock(C, cfg.heads, cfg.in_dim_cross, cfg.mlp_ratio, cfg.norm_eps) for _ in range(cfg.depth)
        )
        self.head_logits = nn.Linear(C, cfg.vocab_size)
        self.encoder_proj = nn.Linear(cfg.in_dim_cross, C)
        self.logit_norm = nn.LayerNorm(C, eps=cfg.norm_eps, elementwise_affine=False)
        if not self.pos_start.is_meta:
            self.init_weights(std)
        self.vae_proxy = (vae,) if vae is not None else ()

    @torch.no_grad()
    def init_weights(self, std: float | None = None) -> None:
        """Random init in the spirit of upstream ``init_weights`` (trunc-normal, zero biases, scaled out-projections).

        Only for tests and benchmarks: real use loads a checkpoint.
        """
        std = std if std is not None else math.sqrt(1 / self.C / 3)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
        nn.init.trunc_normal_(self.pos_start, std=std)
        self.head_logits.weight.mul_(0.02)
        for b in self.blocks:
            b.attn.proj.weight.div_(math.sqrt(2 * self.depth))
            b.cross_attn.proj.weight.div_(math.sqrt(2 * self.depth))
            b.ffn.fc2.weight.div_(math.sqrt(2 * self.depth))

    def attach_vae(self, vae: nn.Module) -> STAR:
        self.vae_proxy = (vae,)
        return self

    # ------------------------------------------------------------------ generation entry points
    def new_session(self, *args, **kwargs) -> STARSession:
        """See :func:`stagevar.models.star.session.new_session` for the arguments (after ``model``)."""
        return new_session(self, *args, **kwargs)

    @torch.no_grad()
    def autoregressive_infer_cfg(self, *args, **kwargs) -> torch.Tensor:
        """The official entry point with upstream's signature (``B, label_B, encoder_hidden_states,
        encoder_attention_mask, encoder_pool_feat, g_seed, cfg, top_k, top_p, more_smooth, w_mask,
        sample_version``): images ``(B, 3, H, W)`` float in ``[0, 1]``; see :mod:`.official` for what is supported.
        Autocast is the caller's, as upstream. ``stagevar.accelerate(model)`` replaces this method."""
        return official_call(self, run_plain, *args, **kwargs)


# ------------------------------------------------------------------------------------------- teacher forcing


def level_ids(patch_nums, device=None) -> torch.Tensor:
    """Scale index of every token: int64 ``(L,)``."""
    return torch.cat([torch.full((pn * pn,), i, dtype=torch.long) for i, pn in enumerate(patch_nums)]).to(device)


def block_causal_mask(patch_nums, device=None) -> torch.Tensor:
    """Additive float32 ``(1, 1, L, L)``: token i sees token j iff scale(j) <= scale(i)."""
    d = level_ids(patch_nums, device)
    return torch.where(d[None, :] <= d[:, None], 0.0, -math.inf).to(torch.float32)[None, None]


@torch.no_grad()
def teacher_forced_logits(model: nn.Module, x_next: torch.Tensor, hidden, mask01, pool) -> torch.Tensor:
    """Full-sequence forward with the block-causal mask (upstream ``VAR.forward`` without token dropping).

    Args:
        x_next: the inputs of scales 1..S-1 (area-downsampled ``f_hat``), float ``(R, L - 1, Cvae)``.
        hidden, mask01, pool: text ``(R, T, D)``, ``(R, T)`` 0/1, ``(R, D)`` for the same R rows.
    Returns:
        float32 logits ``(R, L, V)``. Cross-attention uses row 0 for every row (the upstream ``[0]``).
    """
    g = model_geometry(model)
    pn = g["patch_nums"]
    dev = model.word_embed.weight.device
    sos = model.encoder_proj(pool)[:, None] + model.pos_start
    x = torch.cat([sos, model.word_embed(x_next.float())], dim=1)
    x = x + model.lvl_embed(level_ids(pn, dev))[None]
    cos, sin = rope_tables(g["head_dim"], pn, g["theta"], g["norm"], dev)
    m = block_causal_mask(pn, dev)
    bias = text_bias(mask01)
    for b in model.blocks:
        x = block_forward(b, x, cos, sin, self_mask=m, text=(hidden, bias))
    return model.head_logits(model.logit_norm(x.float())).float()
