"""STAR's official generation entry point, ``autoregressive_infer_cfg``, over a generation session.

``official_call(model, runner, ...)`` takes upstream's arguments (``sample.py``'s call), builds a
:class:`~.session.STARSession` for any STAR object (ours or the official ``VAR`` class, whose VQ-VAE is
``model.vae_proxy[0]``) and lets ``runner(session, decode=True, call_seed=g_seed)`` drive it: the plain loop for
our class, the StageVAR loop after ``stagevar.accelerate``. Returns upstream's value: images float32
``(B, 3, H, W)`` in [0, 1].

As upstream, the autocast context is the caller's (``sample.py`` wraps the call in fp16 autocast); decoding is fp32.
``label_B`` is ignored (as upstream); ``w_mask`` has no effect (no sampler head: the sampler checkpoint is not
supported); ``more_smooth=True`` and ``sample_version='old'`` raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

import torch

from .session import new_session


@torch.no_grad()
def official_call(
    model,
    runner,
    B: int,
    label_B=None,
    encoder_hidden_states=None,
    encoder_attention_mask=None,
    encoder_pool_feat=None,
    g_seed=None,
    cfg=1.5,
    top_k=0,
    top_p=0.0,
    more_smooth=False,
    w_mask=False,
    sample_version="new",
):
    """Upstream ``VAR.autoregressive_infer_cfg`` semantics (``models/var_drop.py``) driven by ``runner``
    (``stagevar.models.common.run_plain`` for the plain loop)."""
    if more_smooth:
        raise ValueError("more_smooth: STAR's Gumbel-softmax visualisation mode is not supported")
    if sample_version == "old":
        raise ValueError("sample_version: 'old' (per-scale top-k/top-p overrides) is not supported")
    if encoder_hidden_states is None or encoder_attention_mask is None or encoder_pool_feat is None:
        raise ValueError("encoder_hidden_states/encoder_attention_mask/encoder_pool_feat: all three are required")
    proxy = getattr(model, "vae_proxy", ())
    if not proxy or proxy[0] is None:
        raise ValueError("model: the STAR model has no VQ-VAE (vae_proxy); for our STAR call model.attach_vae(vae)")
    seed = None if g_seed is None else int(g_seed)
    session = new_session(
        model,
        proxy[0],
        (encoder_hidden_states, encoder_attention_mask, encoder_pool_feat),
        batch=int(B),
        seeds=seed,
        cfg=cfg,
        top_k=top_k,
        top_p=top_p,
        amp_dtype=None,
    )
    return runner(session, decode=True, call_seed=seed)


__all__ = ["official_call"]
