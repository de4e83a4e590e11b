"""STAR (text-to-image, scale-wise autoregressive) with the official parameter names.

Public API:
- configs: :data:`CONFIGS`, :func:`get_config` (``star-d30-1024``, ``star-d30-512``, ``star-d30-256``,
  ``star-d16-256``, ``tiny``), :class:`STARConfig`, :class:`VQVAEConfig`
- models: :class:`STAR`, :class:`VQVAE`, :func:`build_star` (random weights), :func:`teacher_forced_logits`
- generation: :func:`new_session` / :class:`STARSession` (the ``GenerationSession`` protocol),
  :func:`generate_images`; the plain loop and the uint8 conversion are :mod:`stagevar.models.common`'s
- loading: :func:`load_star` (build and load both checkpoints), :func:`load_star_weights`,
  :func:`load_vqvae_weights` (strict loads raise :class:`stagevar.models.checkpoint.CheckpointMismatch`)
- text: :class:`CLIPTextEncoder`, :func:`load_clip_text_encoder` (needs ``transformers``)
"""

from __future__ import annotations

import torch

from .config import CONFIGS, STARConfig, VQVAEConfig, get_config
from .generate import generate_images
from .loader import load_star_weights, load_vqvae_weights
from .session import STARSession, new_session
from .text import CLIPTextEncoder, load_clip_text_encoder
from .transformer import STAR, teacher_forced_logits
from .vqvae import VQVAE


def build_star(name: str = "star-d30-1024", device=None, dtype: torch.dtype | None = None, **overrides):
    """Model and VQ-VAE of the configuration ``name`` (random weights), on ``device`` (built there directly), in
    ``dtype``. Returns ``(model, vae)``.

    The VAE gets a random init too (upstream leaves it uninitialised until a checkpoint loads).
    """
    cfg = get_config(name, **overrides)
    with torch.device(device if device is not None else "cpu"):
        vae = VQVAE(cfg.vae)
        model = STAR(cfg.star, vae=vae)
    if dtype is not None:
        model.to(dtype)
        vae.to(dtype)
    return model.eval(), vae


def load_star(
    star_path,
    vae_path,
    name: str = "star-d30-1024",
    device="cpu",
    dtype: torch.dtype | None = None,
    *,
    allow_pickle: bool = False,
    **overrides,
):
    """Model and VQ-VAE of the configuration ``name`` with the official checkpoints loaded (strict), on ``device``.
    Returns ``(model, vae)``.

    Built on the meta device and filled by assignment, so the 1.7B random init is never computed.
    ``star_path``: ``STAR.pth`` (``["trainer"]["var_wo_ddp"]``) or a flat state dict; the sampler checkpoint is
    refused. ``vae_path``: ``VAE.pth`` / ``vae_ch160v4096z32.pth``.
    ``allow_pickle``: see :func:`.loader.read_checkpoint`.
    """
    model, vae = build_star(name, device="meta", **overrides)
    load_vqvae_weights(vae, vae_path, allow_pickle=allow_pickle)  # the small file first: a bad VAE path fails fast
    load_star_weights(model, star_path, allow_pickle=allow_pickle)
    model.to(device=device, dtype=dtype)
    vae.to(device=device, dtype=dtype)
    return model.eval(), vae.eval()


__all__ = [
    "CONFIGS",
    "CLIPTextEncoder",
    "STAR",
    "STARConfig",
    "STARSession",
    "VQVAE",
    "VQVAEConfig",
    "build_star",
    "generate_images",
    "get_config",
    "load_clip_text_encoder",
    "load_star",
    "load_star_weights",
    "load_vqvae_weights",
    "new_session",
    "teacher_forced_logits",
]
