"""The model families StageVAR runs on (Infinity, STAR): one :class:`Family` record each, in one table.

Everything that differs between families outside their model packages is a field of the record: how to recognise
a model object (ours or the official class), the official entry point that ``accelerate`` drives, the schedule
presets and their default unit, loading checkpoints and encoding prompts (``stagevar generate``), the random-weight
models of :mod:`stagevar.zoo` and their sessions, and the model names the command line accepts. ``accelerate``, the
CLI, the zoo, the presets, the benchmark and the demo read :data:`FAMILIES`; none of them branches on a family's
name.

Adding a model family:

1. Write its model package ``stagevar/models/<family>/``: the model with the official parameter names, its VAE,
   a strict checkpoint loader, a session class implementing ``models.session.GenerationSession``, and
   ``official_call(model, runner, ...)`` with upstream's ``autoregressive_infer_cfg`` signature.
2. Write ``models/<family>/family.py``, like Infinity's and STAR's: the structural predicate, ``load``,
   ``sessions``, ``build_random``, ``random_text_encoder``, the presets (the paper's operating point for the family)
   and one ``FAMILY = Family(...)`` record (:class:`stagevar.models.family.Family`) with the default unit and guidance
   scale, the checkpoint and random-weight model names.
3. Add its ``FAMILY`` to :data:`FAMILIES` below: one line.
4. Test it: ``tests/stagevar/test_families.py`` (recognition, presets, names) and the session tests under
   ``tests/stagevar/models/<family>/``. Nothing else changes: the CLI choices, ``accelerate``, the zoo, the
   benchmark and the peers registry (peers that support every family) pick it up from the table.
"""

from __future__ import annotations

from .models.family import PAPER_RANK_RATIO, Family
from .models.infinity import family as _infinity
from .models.star import family as _star

# ----------------------------------------------------------------------------------------------- the table
FAMILIES: dict[str, Family] = {f.name: f for f in (_infinity.FAMILY, _star.FAMILY)}

# what the zoo, the demo and the tests name (defined by the families themselves)
DEMO_INFINITY = _infinity.DEMO_INFINITY
TABLE7_RANK_RATIOS = _infinity.TABLE7_RANK_RATIOS
random_infinity_text = _infinity.random_infinity_text
random_star_text = _star.random_star_text

__all__ = [
    "DEMO_INFINITY",
    "FAMILIES",
    "PAPER_RANK_RATIO",
    "TABLE7_RANK_RATIOS",
    "Family",
    "canonical",
    "checkpoint_model_names",
    "family",
    "family_of_model",
    "family_of_name",
    "random_infinity_text",
    "random_model_names",
    "random_star_text",
]


# ----------------------------------------------------------------------------------------------- lookups
def family(name: str) -> Family:
    """The family called ``name``; ``ValueError`` naming ``family`` otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"family: expected one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def family_of_model(model) -> Family:
    """The family of a model object (ours or the official class), by structure; ``ValueError`` naming ``model``."""
    for entry in FAMILIES.values():
        if entry.is_model(model):
            return entry
    known = " nor ".join(f"{f.title} ({f.structure})" for f in FAMILIES.values())
    raise ValueError(f"model: {type(model).__name__} is neither {known}")


def canonical(name: str) -> str:
    """``name`` with earlier spellings mapped to the current model names (``star`` is ``star-d30``)."""
    for entry in FAMILIES.values():
        if name in entry.aliases:
            return entry.aliases[name]
    return name


def random_model_names() -> tuple[str, ...]:
    """Every random-weight model name (:mod:`stagevar.zoo`), family by family."""
    return tuple(name for entry in FAMILIES.values() for name in entry.random_models)


def checkpoint_model_names() -> tuple[str, ...]:
    """Every model name with released checkpoints (``stagevar generate --model``)."""
    return tuple(name for entry in FAMILIES.values() for name in entry.checkpoints)


def family_of_name(name: str) -> Family:
    """The family of a model name (random-weight or checkpoint, aliases accepted); ``ValueError`` naming ``model``."""
    name = canonical(name)
    for entry in FAMILIES.values():
        if name in entry.random_models or name in entry.checkpoints:
            return entry
    known = sorted({*random_model_names(), *checkpoint_model_names()})
    raise ValueError(f"model: expected one of {known}, got {name!r}")
