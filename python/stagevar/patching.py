"""``accelerate(model)``: run an existing Infinity or STAR model object under a StageVAR schedule.

Works on our model classes and on objects of the official classes, recognised by structure (Infinity:
``block_chunks`` with ``text_proj_for_sos``; STAR: ``blocks`` whose blocks have ``cross_attn``). The model's
generation entry point, ``autoregressive_infer_cfg``, is replaced on the instance by one with the same signature
and return format that drives the schedule (``stagevar.generate``); the original stays reachable and
``restore(model)`` (or leaving ``with accelerated(model):``) puts it back, leaving the object exactly as before.
Users' scripts that call ``model.autoregressive_infer_cfg`` (``gen_one_img``, ``sample.py``) then run accelerated
unchanged. No per-generation state is stored on the model: every call builds a fresh session.

The replacement entry looks its model up when called (it holds a weak reference, not a closure over the object):
``copy.deepcopy`` of an accelerated model gives a copy that is accelerated with the same schedule and runs the
copy's own weights, and pickling (``torch.save(model)``) stores the acceleration with the model. ``accelerate``
and ``restore`` are thread-safe (one lock); generations themselves may run concurrently on different models.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import threading
import weakref
from dataclasses import dataclass

from .families import FAMILIES, family_of_model
from .loop import generate
from .schedule import StageSchedule, resolve

ENTRY = "autoregressive_infer_cfg"


def family_of(model) -> str:
    """The family name (``"infinity"``, ``"star"``) of ``model`` from its structure; ``ValueError`` naming ``model``
    otherwise (see :data:`stagevar.families.FAMILIES`)."""
    return family_of_model(model).name


def _model_device(model):
    """The device of ``model``'s first parameter (``None`` for a model without parameters)."""
    param = next(model.parameters(), None) if hasattr(model, "parameters") else None
    return None if param is None else param.device


def _check_cuda_graphs(model, cuda_graphs) -> None:
    """``cuda_graphs`` is a bool, and ``True`` only for a model on a CUDA device (the error at the mistake, not at
    the first generation)."""
    if not isinstance(cuda_graphs, bool):
        raise ValueError(f"cuda_graphs: expected True or False, got {type(cuda_graphs).__name__} {cuda_graphs!r:.40}")
    device = _model_device(model)
    if cuda_graphs and device is not None and device.type != "cuda":
        raise ValueError(f"cuda_graphs: CUDA graphs need a CUDA device; this model is on {device.type}")


@dataclass
class _Patch:
    schedule: StageSchedule
    had_own_entry: bool
    own_entry: object


_PATCHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()  # accelerate/restore read-modify-write the model's __dict__ and _PATCHES together


class _AcceleratedEntry:
    """The ``autoregressive_infer_cfg`` an accelerated model gets: the official signature, the schedule's loop.

    It finds its model through a weak reference at call time, so a deep copy of the model (whose copy of this entry
    points at the copied model) runs the copy's weights, and the model/entry cycle holds no strong reference.
    """

    def __init__(self, model, family: str, plan: StageSchedule, backend: str | None, seed, cuda_graphs: bool = False):
        self._model = weakref.ref(model)
        self.family, self.stagevar_schedule, self.backend, self.seed = family, plan, backend, seed
        self.cuda_graphs = cuda_graphs
        own = getattr(type(model), ENTRY, None)
        if own is not None:  # the class's entry point: its name, docstring and signature (without ``self``)
            functools.update_wrapper(self, own, updated=())
            del self.__wrapped__  # no reference to the original, which copies and pickles would carry along
            params = list(inspect.signature(own).parameters.values())
            self.__signature__ = inspect.Signature(params[1:])

    def __call__(self, *args, **kwargs):
        model = self._model()
        if model is None:
            raise ValueError("model: the accelerated model no longer exists")
        plan, backend, seed = self.stagevar_schedule, self.backend, self.seed
        graphs = {"cuda_graphs": True} if self.cuda_graphs else {}  # only when set: the eager call stays as it was

        def runner(session, *, decode=True, call_seed=None):
            # Projections follow the call's generation seed unless accelerate() fixed one.
            base = seed if seed is not None else call_seed
            return generate(session, plan, seed=base, backend=backend, decode=decode, **graphs)

        return FAMILIES[self.family].official_call(model, runner, *args, **kwargs)

    def __deepcopy__(self, memo):
        # deepcopy(model) copies the model first and records it in memo, then its __dict__ with this entry
        original = self._model()
        target = memo.get(id(original), original) if original is not None else None
        if target is None or target is original:
            raise TypeError("the accelerated entry point can only be copied with its model (copy.deepcopy(model))")
        clone = _AcceleratedEntry(
            target, self.family, self.stagevar_schedule, self.backend, self.seed, self.cuda_graphs
        )
        patch = _PATCHES.get(original)
        with _LOCK:
            _PATCHES[target] = _Patch(
                self.stagevar_schedule,
                patch.had_own_entry if patch else False,
                copy.deepcopy(patch.own_entry, memo) if patch else None,
            )
        return clone

    def __reduce__(self):
        model = self._model()
        if model is None:
            raise TypeError("the accelerated model no longer exists")
        patch = _PATCHES.get(model)
        if patch is not None and patch.had_own_entry:
            raise TypeError(
                "cannot pickle an accelerated model whose autoregressive_infer_cfg was set on the instance; "
                "call stagevar.restore(model) first"
            )
        state = (model, self.family, self.stagevar_schedule.to_dict(), self.backend, self.seed, self.cuda_graphs)
        return (_rebuild_entry, state)


def _rebuild_entry(model, family: str, schedule: dict, backend, seed, cuda_graphs: bool = False) -> _AcceleratedEntry:
    """Unpickling: the entry of ``model`` (being rebuilt around it), registered as accelerated.

    ``cuda_graphs`` defaults to ``False`` for models pickled before the switch existed."""
    plan = StageSchedule.from_dict(schedule)
    with _LOCK:
        _PATCHES[model] = _Patch(plan, False, None)
    return _AcceleratedEntry(model, family, plan, backend, seed, cuda_graphs)


def accelerate(
    model,
    schedule: str | StageSchedule | dict = "paper",
    *,
    backend: str | None = None,
    seed=None,
    cuda_graphs: bool = False,
):
    """Make ``model.autoregressive_infer_cfg`` run under ``schedule``; returns ``model``.

    Args:
        model: our ``Infinity``/``STAR`` or an object of the official classes.
        schedule: a preset (``paper``, ``paper-table7``, ``vanilla``, ``skip-only``, ``cfg-drop-only``), a JSON
            file, a dict or a :class:`StageSchedule`. Calling ``accelerate`` again replaces the schedule.
        backend: backend of the two ops (``None``: ``stagevar_kernels.default_backend`` of the model's device).
        seed: base seed of the projections (default: the schedule's).
        cuda_graphs: run the computed scale steps as CUDA graphs (:func:`stagevar.generate`'s switch): the first
            call per shape captures, later ones replay. ``ValueError`` naming it for a non-bool or a model that is
            not on a CUDA device.
    """
    family = family_of(model)
    _check_cuda_graphs(model, cuda_graphs)
    plan = resolve(schedule, family)
    with _LOCK:
        if model in _PATCHES:
            _restore_locked(model)
        own = model.__dict__.get(ENTRY)
        _PATCHES[model] = _Patch(plan, ENTRY in model.__dict__, own)
        object.__setattr__(model, ENTRY, _AcceleratedEntry(model, family, plan, backend, seed, cuda_graphs))
    return model


def restore(model) -> None:
    """Undo :func:`accelerate`: the model's own ``autoregressive_infer_cfg`` is back, nothing else remains."""
    with _LOCK:
        _restore_locked(model)


def _restore_locked(model) -> None:
    patch = _PATCHES.pop(model, None)
    if patch is None:
        raise ValueError(f"model: this {type(model).__name__} object is not accelerated")
    model.__dict__.pop(ENTRY, None)
    if patch.had_own_entry:
        model.__dict__[ENTRY] = patch.own_entry


def schedule_of(model) -> StageSchedule | None:
    """The schedule ``model`` currently runs under, or ``None``."""
    with _LOCK:
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
