"""STAR (text-to-image, scale-wise autoregressive) with the official parameter names.

Public API:
    build_star(name, device=None, dtype=None) -> (STAR, VQVAE): model and VAE of a preset, random weights.
    STAR, VQVAE, STARConfig, VQVAEConfig, PRESETS, get_preset
    load_star(model, path), load_vqvae(vae, path): checkpoint loading (strict, readable report)
    load_clip_text_encoder(path): CLIP text model from a local directory (needs ``transformers``)
    new_session(model, vae, text, batch=, seeds=, cfg=, top_k=, top_p=, record=, amp_dtype=) -> STARSession
    run_plain(session) -> images; run_scales(session) -> session (no decode)
    generate(model, vae, text, ...) -> images (B, 3, H, W) in [0, 1]
    teacher_forced_logits(model, x_next, hidden, mask, pool): the full-sequence oracle
"""

from __future__ import annotations

import torch

from .config import PRESETS, STARConfig, VQVAEConfig, get_preset
from .loader import StateDictMismatch, load_star, load_vqvae
from .session import STARSession, generate, new_session, run_plain, run_scales
from .text import CLIPTextEncoder, load_clip_text_encoder
from .transformer import STAR, teacher_forced_logits
from .vqvae import VQVAE


def build_star(name: str = "star-d30-1024", device=None, dtype: torch.dtype | None = None, **overrides):
    """Model and VQ-VAE of preset ``name`` (random weights), on ``device`` (built there directly), in ``dtype``.

    The VAE gets a random init too (upstream leaves it uninitialised until a checkpoint loads).
    """
    preset = get_preset(name, **overrides)
    with torch.device(device if device is not None else "cpu"):
        vae = VQVAE(preset.vae)
        model = STAR(preset.star, vae=vae)
    if dtype is not None:
        model.to(dtype)
        vae.to(dtype)
    return model.eval(), vae


def load_pretrained(
    star_path,
    vae_path,
    name: str = "star-d30-1024",
    device="cpu",
    dtype: torch.dtype | None = None,
    *,
    allow_pickle: bool = False,
    **overrides,
):
    """Model and VQ-VAE of preset ``name`` with the official checkpoints loaded (strict), on ``device``.

    Built on the meta device and filled by assignment, so the 1.7B random init is never computed.
    ``star_path``: ``STAR.pth`` (``["trainer"]["var_wo_ddp"]``) or a flat state dict; the sampler checkpoint is
    refused. ``vae_path``: ``VAE.pth`` / ``vae_ch160v4096z32.pth``.
    ``allow_pickle``: see :func:`.loader.read_checkpoint`.
    """
    model, vae = build_star(name, device="meta", **overrides)
    load_vqvae(vae, vae_path, allow_pickle=allow_pickle)  # the small file first: a bad VAE path fails fast
    load_star(model, star_path, allow_pickle=allow_pickle)
    model.to(device=device, dtype=dtype)
    vae.to(device=device, dtype=dtype)
    return model.eval(), vae.eval()


__all__ = [
    "load_pretrained",
    "PRESETS",
    "STAR",
    "STARConfig",
    "STARSession",
    "StateDictMismatch",
    "VQVAE",
    "VQVAEConfig",
    "CLIPTextEncoder",
    "build_star",
    "generate",
    "get_preset",
    "load_clip_text_encoder",
    "load_star",
    "load_vqvae",
    "new_session",
    "run_plain",
    "run_scales",
    "teacher_forced_logits",
]
