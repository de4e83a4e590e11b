"""Infinity's official generation entry point, ``autoregressive_infer_cfg``, over a generation session.

``official_call(model, runner, ...)`` takes upstream's arguments (``gen_one_img``'s call), builds an
:class:`InfinitySession` for any Infinity object (ours or the official class) and lets ``runner`` drive it: the plain
loop for our class, the StageVAR loop after ``stagevar.accelerate``. Returns upstream's ``(ret, idx_Bl_list, img)``:
``([], [], img)`` with ``img`` uint8 ``(B, H, W, 3)`` in **BGR** order (``([], [], [])`` without ``ret_img``).

On an object of the official class, cross-attention runs in bf16 (``ca_bf16``), as the official code does: its
``CrossAttention`` casts fp32 queries and keys/values to bf16 for ``flash_attn``, on every device; so ``vanilla``
through ``stagevar.accelerate`` gives the official images bit for bit. Our class keeps fp32 cross-attention: it says
so with its class attribute ``ca_bf16 = False``, which the official class does not have.

Supported: ``cfg_insertion_layer`` 0 (CFG on logits; every official script) or -k (on a block's output;
``gen_one_img``'s default -5), the bitwise VAE (``vae_type != 0``),
``gt_leak <= 0``, ``trunk_scale >= len(scale_schedule)``. Anything else raises ``ValueError``. The unused upstream
arguments (``cfg_sc``, ``gumbel``, ``norm_cfg``, ...) are accepted and ignored, as upstream ignores them.
"""

from __future__ import annotations

import torch

from .session import new_session


def official_call(
    model,
    runner,
    vae=None,
    scale_schedule=None,
    label_B_or_BLT=None,
    B=1,
    negative_label_B_or_BLT=None,
    force_gt_Bhw=None,
    g_seed=None,
    cfg_list=(),
    tau_list=(),
    cfg_sc=3,
    top_k=0,
    top_p=0.0,
    returns_vemb=0,
    ratio_Bl1=None,
    gumbel=0,
    norm_cfg=False,
    cfg_exp_k=0.0,
    cfg_insertion_layer=(-5,),
    vae_type=0,
    softmax_merge_topk=-1,
    ret_img=False,
    trunk_scale=1000,
    gt_leak=0,
    gt_ls_Bl=None,
    inference_mode=False,
    save_img_path=None,
    sampling_per_bits=1,
):
    """Upstream ``Infinity.autoregressive_infer_cfg`` semantics driven by ``runner(session, decode, call_seed)``
    (``stagevar.models.common.run_plain`` for the plain loop)."""
    if vae is None or scale_schedule is None or label_B_or_BLT is None:
        raise ValueError("vae, scale_schedule and label_B_or_BLT are required")
    n = len(scale_schedule)
    cfg_list, tau_list = list(cfg_list), list(tau_list)
    if len(cfg_list) < n or len(tau_list) < n:
        raise ValueError(f"cfg_list/tau_list: need at least {n} values (one per scale)")
    if vae_type == 0:
        raise ValueError("vae_type=0 (index labels) is not supported: Infinity-2B/8B use the bitwise VAE")
    if gt_leak is not None and gt_leak > 0:
        raise ValueError("gt_leak > 0 (teacher forcing) is not supported")
    if trunk_scale < n:
        raise ValueError(f"trunk_scale={trunk_scale} < {n} scales is not supported")
    seed = None if g_seed is None else int(g_seed)
    session = new_session(
        model,
        vae,
        scale_schedule,
        label_B_or_BLT,
        batch=B,
        negative_text=negative_label_B_or_BLT or None,
        seeds=seed,
        cfg_list=cfg_list[:n],
        tau_list=tau_list[:n],
        top_k=top_k,
        top_p=top_p,
        cfg_insertion_layer=cfg_insertion_layer,
        ca_bf16=getattr(model, "ca_bf16", True),  # the official class: bf16 cross-attention, as its flash_attn call
    )
    images = runner(session, decode=bool(ret_img), call_seed=seed)
    if not ret_img:
        return [], [], []
    # upstream's own conversion, on purpose: truncation (not rounding) and BGR order, so the bytes are upstream's
    images_BHW3 = images.permute(0, 2, 3, 1).mul(255).to(torch.uint8)
    return [], [], images_BHW3.flip(dims=(3,))


__all__ = ["official_call"]
