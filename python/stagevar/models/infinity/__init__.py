"""Infinity-2B/8B (FoundationVision/Infinity) inference with the official parameter names.

Public API:
- configs: :data:`CONFIGS`, :func:`get_config` (``infinity_2b``, ``infinity_8b``, ``tiny``, ``tiny_8b``)
- models: :class:`Infinity`, :func:`build_infinity`, :class:`BSQVAE`, :func:`teacher_forced_logits`
- generation: :func:`new_session` / :class:`InfinitySession` (the ``GenerationSession`` protocol), :func:`run_plain`,
  :func:`generate`, :func:`to_uint8`, :func:`autoregressive_infer_cfg`,
  :func:`official_call` / :func:`plain_runner` (the official entry point over a runner, for ``accelerate``)
- schedules: :func:`get_scale_schedule`, :func:`rope_grid`, :data:`H_DIV_W_TEMPLATES`, :data:`PN_LENGTHS`
- loading: :func:`load_infinity`, :func:`load_infinity_weights`, :func:`load_vae_weights`, :func:`read_state_dict`,
  :func:`save_sharded`, :class:`LoadReport`, :class:`CheckpointMismatch`
- text: :class:`TextFeatures`, :func:`load_t5`, :func:`encode_prompts`
"""

from .config import CONFIGS, InfinityConfig, VAEConfig, get_config
from .generate import generate
from .loader import (
    CheckpointMismatch,
    LoadReport,
    load_infinity,
    load_infinity_weights,
    load_vae_weights,
    read_state_dict,
    save_sharded,
)
from .official import official_call, plain_runner
from .scales import H_DIV_W_TEMPLATES, PN_LENGTHS, get_scale_schedule, nearest_template, rope_grid
from .session import InfinitySession, new_session, run_plain, run_scales, to_uint8
from .text import TextFeatures, encode_prompts, load_t5
from .transformer import Infinity, autoregressive_infer_cfg, build_infinity, teacher_forced_logits
from .vae import BSQVAE

__all__ = [
    "BSQVAE",
    "CONFIGS",
    "CheckpointMismatch",
    "H_DIV_W_TEMPLATES",
    "Infinity",
    "InfinityConfig",
    "InfinitySession",
    "LoadReport",
    "PN_LENGTHS",
    "TextFeatures",
    "VAEConfig",
    "autoregressive_infer_cfg",
    "build_infinity",
    "encode_prompts",
    "generate",
    "get_config",
    "get_scale_schedule",
    "load_infinity",
    "load_infinity_weights",
    "load_t5",
    "load_vae_weights",
    "nearest_template",
    "new_session",
    "official_call",
    "plain_runner",
    "read_state_dict",
    "rope_grid",
    "run_plain",
    "run_scales",
    "save_sharded",
    "teacher_forced_logits",
    "to_uint8",
]
