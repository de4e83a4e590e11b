"""A small trained text-to-image model of Infinity's architecture on procedural shapes, and a checker of its images.

- :mod:`~stagevar.toy.data`: captioned 64x64 images of 1-3 coloured shapes, deterministic from ``(seed, index)``;
- :mod:`~stagevar.toy.checker`: GenEval-like scores (colour, shape, count, position, two objects) from the pixels;
- :mod:`~stagevar.toy.model`: the model (BSQ tokenizer, learned text encoder, Infinity transformer) and its sizes;
- :mod:`~stagevar.toy.train`: ``python -m stagevar.toy.train --out DIR`` (deterministic, resumable);
- :func:`load` / :func:`evaluate`: a trained folder as a session factory, and checker scores under a schedule.
"""

from .load import ToyModel, evaluate, load, verify
from .model import TOY64, TOY64_REHEARSAL, TRAIN_FULL, TRAIN_REHEARSAL, ToyConfig, TrainConfig

__all__ = [
    "TOY64",
    "TOY64_REHEARSAL",
    "TRAIN_FULL",
    "TRAIN_REHEARSAL",
    "ToyConfig",
    "ToyModel",
    "TrainConfig",
    "evaluate",
    "load",
    "verify",
]
