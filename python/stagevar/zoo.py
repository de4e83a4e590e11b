"""Models by name with random weights, and random text conditioning: what the demo and the benchmarks run.

Random weights give the real shapes and therefore the real cost; the images they draw are noise. Names (the
``random_models`` of :data:`stagevar.families.FAMILIES`): ``infinity-2b``, ``infinity-8b``, ``infinity-demo``
(small, for the CPU demo), ``infinity-tiny`` (tests), ``star-d30`` (STAR-1.7B at 1024px), ``star-tiny`` (tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import families
from .families import random_infinity_text, random_star_text

MODELS = families.random_model_names()

__all__ = ["MODELS", "Built", "build", "canonical", "family_of", "random_infinity_text", "random_star_text"]


def canonical(name: str) -> str:
    """``name`` with earlier spellings mapped to the names of :data:`MODELS` (``star`` is ``star-d30``)."""
    return families.canonical(name)


def family_of(name: str) -> str:
    """The family name (``"infinity"``, ``"star"``) of a model name of :data:`MODELS`."""
    name = canonical(name)
    if name not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {name!r}")
    return families.family_of_name(name).name


@dataclass
class Built:
    """A model, its VAE, its family (``infinity``/``star``) and a factory of fresh generation sessions.

    ``new_session(batch, seed, **kw)`` draws random text conditioning (seeded) and starts a generation.
    """

    name: str
    family: str
    model: torch.nn.Module
    vae: torch.nn.Module
    new_session: Callable


def build(name: str, device="cpu", *, h_div_w: float = 1.0, pn: str = "1M", blocks_bf16: bool | None = None) -> Built:
    """Build model ``name`` with random weights on ``device``.

    Infinity: blocks in bf16 on CUDA (as upstream), everything else fp32; ``h_div_w``/``pn`` pick the scale schedule.
    STAR: fp32 weights; on CUDA the session runs under its autocast as upstream's fp16 scripts.
    """
    name = canonical(name)
    entry = families.family(family_of(name))
    device = torch.device(device)
    torch.manual_seed(0)
    model, vae, new_session = entry.build_random(
        entry.random_models[name], device, h_div_w=h_div_w, pn=pn, blocks_bf16=blocks_bf16
    )
    return Built(name, entry.name, model, vae, new_session)
