"""Infinity-2B/8B (FoundationVision/Infinity) inference with the official parameter names.

Public API:
- configs: :data:`CONFIGS`, :func:`get_config` (``infinity_2b``, ``infinity_8b``, ``tiny``, ``tiny_8b``)
- models: :class:`Infinity`, :func:`build_infinity`, :class:`BSQVAE`, :func:`teacher_forced_logits`
- generation: :func:`new_session` / :class:`InfinitySession` (the ``GenerationSession`` protocol),
  :func:`generate_images`, :func:`autoregressive_infer_cfg`,
  :func:`official_call` (the official entry point over a runner, for ``accelerate``); the plain loop and the uint8
  conversion are :mod:`stagevar.models.common`'s
- schedules: :func:`get_scale_schedule`, :func:`rope_grid`, :data:`H_DIV_W_TEMPLATES`, :data:`PN_LENGTHS`
- loading: :func:`load_infinity`, :func:`load_infinity_weights`, :func:`load_vae_weights`, :func:`read_state_dict`,
  :func:`save_sharded` (strict loads raise :class:`stagevar.models.checkpoint.CheckpointMismatch`)
- text: :class:`TextFeatures`, :func:`load_t5`, :func:`encode_prompts`
"""

from .config import CONFIGS, InfinityConfig, VAEConfig, get_config
from .generate import generate_images
from .loader import (
    load_infinity,
    load_infinity_weights,
    load_vae_weights,
    read_state_dict,
    save_sharded,
)
from .official import official_call
from .scales import H_DIV_W_TEMPLATES, PN_LENGTHS, get_scale_schedule, nearest_template, rope_grid
from .session import InfinitySession, new_session
from .text import TextFeatures, encode_prompts, load_t5
from .transformer import Infinity, autoregressive_infer_cfg, build_infinity, teacher_forced_logits
from .vae import BSQVAE

__all__ = [
    "BSQVAE",
    "CONFIGS",
    "H_DIV_W_TEMPLATES",
    "Infinity",
    "InfinityConfig",
    "InfinitySession",
    "PN_LENGTHS",
    "TextFeatures",
    "VAEConfig",
    "autoregressive_infer_cfg",
    "build_infinity",
    "encode_prompts",
    "generate_images",
    "get_config",
    "get_scale_schedule",
    "load_infinity",
    "load_infinity_weights",
    "load_t5",
    "load_vae_weights",
    "nearest_template",
    "new_session",
    "official_call",
    "read_state_dict",
    "rope_grid",
    "save_sharded",
    "teacher_forced_logits",
]
