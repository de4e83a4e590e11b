"""``accelerate(model)``: run an existing Infinity or STAR model object under a StageVAR schedule.

Works on our model classes and on objects of the official classes, recognised by structure (Infinity:
``block_chunks`` with ``text_proj_for_sos``; STAR: ``blocks`` whose blocks have ``cross_attn``). The model's
generation entry point, ``autoregressive_infer_cfg``, is replaced on the instance by one with the same signature
and return format that drives the schedule (``stagevar.generate``); the original stays reachable and
``restore(model)`` (or leaving ``with accelerated(model):``) puts it back, leaving the object exactly as before.
Users' scripts that call ``model.autoregressive_infer_cfg`` (``gen_one_img``, ``sample.py``) then run accelerated
unchanged. No per-generation state is stored on the model: every call builds a fresh session.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass

from .generate import generate
from .schedule import StageSchedule, resolve

ENTRY = "autoregressive_infer_cfg"


def _is_infinity(model) -> bool:
    return hasattr(model, "block_chunks") and hasattr(model, "text_proj_for_sos") and hasattr(model, "head_nm")


def _is_star(model) -> bool:
    blocks = getattr(model, "blocks", None)
    return blocks is not None and len(blocks) > 0 and hasattr(blocks[0], "cross_attn") and hasattr(model, "head_logits")


def family_of(model) -> str:
    """``"infinity"`` or ``"star"`` from the model's structure; ``ValueError`` naming ``model`` otherwise."""
    if _is_infinity(model):
        return "infinity"
    if _is_star(model):
        return "star"
    raise ValueError(
        f"model: {type(model).__name__} is neither an Infinity model (block_chunks, text_proj_for_sos, head_nm) "
        "nor a STAR model (blocks with cross_attn, head_logits)"
    )


def _official_call(family: str):
    if family == "infinity":
        from .models.infinity.official import official_call
    else:
        from .models.star.official import official_call
    return official_call


@dataclass
class _Patch:
    schedule: StageSchedule
    had_own_entry: bool
    own_entry: object


_PATCHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def accelerate(model, schedule: str | StageSchedule | dict = "paper", *, backend: str | None = None, seed=None):
    """Make ``model.autoregressive_infer_cfg`` run under ``schedule``; returns ``model``.

    Args:
        model: our ``Infinity``/``STAR`` or an object of the official classes.
        schedule: a preset (``paper``, ``paper-table7``, ``vanilla``, ``skip-only``, ``cfg-drop-only``), a JSON
            file, a dict or a :class:`StageSchedule`. Calling ``accelerate`` again replaces the schedule.
        backend: backend of the two ops (``None``: ``stagevar_kernels.default_backend`` of the model's device).
        seed: base seed of the projections (default: the schedule's).
    """
    family = family_of(model)
    plan = resolve(schedule, family)
    if model in _PATCHES:
        restore(model)
    own = model.__dict__.get(ENTRY)
    _PATCHES[model] = _Patch(plan, ENTRY in model.__dict__, own)
    call = _official_call(family)
    original = getattr(model, ENTRY)

    @functools.wraps(original)
    def accelerated_entry(*args, **kwargs):
        def runner(session, *, decode=True, call_seed=None):
            # Projections follow the call's generation seed unless accelerate() fixed one.
            base = seed if seed is not None else call_seed
            return generate(session, plan, seed=base, backend=backend, decode=decode)

        return call(model, runner, *args, **kwargs)

    accelerated_entry.stagevar_schedule = plan
    object.__setattr__(model, ENTRY, accelerated_entry)
    return model


def restore(model) -> None:
    """Undo :func:`accelerate`: the model's own ``autoregressive_infer_cfg`` is back, nothing else remains."""
    patch = _PATCHES.pop(model, None)
    if patch is None:
        raise ValueError(f"model: this {type(model).__name__} object is not accelerated")
    del model.__dict__[ENTRY]
    if patch.had_own_entry:
        model.__dict__[ENTRY] = patch.own_entry


def schedule_of(model) -> StageSchedule | None:
    """The schedule ``model`` currently runs under, or ``None``."""
    patch = _PATCHES.get(model)
    return None if patch is None else patch.schedule


@contextlib.contextmanager
def accelerated(model, schedule: str | StageSchedule | dict = "paper", **kwargs):
    """``with accelerated(model, "paper"): model.autoregressive_infer_cfg(...)`` then restore on exit."""
    accelerate(model, schedule, **kwargs)
    try:
        yield model
    finally:
        restore(model)
