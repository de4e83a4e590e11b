"""STAR's official generation entry point, ``autoregressive_infer_cfg``, over a generation session.

``official_call(model, runner, ...)`` takes upstream's arguments (``sample.py``'s call), builds a
:class:`STARSession` for any STAR object (ours or the official ``VAR`` class, whose VQ-VAE sits in
``vae_proxy[0]``) and lets ``runner`` drive it: the plain loop for our class, the StageVAR loop after
``stagevar.accelerate``. Returns upstream's images: float ``(B, 3, H, W)`` in ``[0, 1]``.
"""

from __future__ import annotations

from .session import new_session, run_plain


def plain_runner(session, *, decode=True, call_seed=None):
    """Runner of the unaccelerated loop (all scales, all blocks)."""
    run_plain(session)
    return session.decode() if decode else None


def official_call(
    model, runner, B, label_B=None, encoder_hidden_states=None, encoder_attention_mask=None, encoder_pool_feat=None,
    g_seed=None, cfg=1.5, top_k=0, top_p=0.0, more_smooth=False, w_mask=False, sample_version="new",
):
    """Upstream ``VAR.autoregressive_infer_cfg`` semantics (the ``sample.py`` path) driven by ``runner``.

    ``label_B`` is ignored as upstream; ``w_mask`` only matters for the sampler head, which is refused at load time.
    """
    if more_smooth:
        raise ValueError("more_smooth: the Gumbel-softmax visualisation mode is not supported")
    if sample_version == "old":
        raise ValueError("sample_version: 'old' (per-scale top-k/top-p overrides) is not supported")
    if encoder_hidden_states is None or encoder_attention_mask is None or encoder_pool_feat is None:
        raise ValueError("encoder_hidden_states/encoder_attention_mask/encoder_pool_feat: all three are required")
    text = (encoder_hidden_states, encoder_attention_mask, encoder_pool_feat)
    session = new_session(model, None, text, batch=B, seeds=g_seed, cfg=cfg, top_k=top_k, top_p=top_p)
    return runner(session, decode=True, call_seed=None if g_seed is None else int(g_seed))


__all__ = ["official_call", "plain_runner"]
