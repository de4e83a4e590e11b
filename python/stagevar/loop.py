"""The StageVAR generation loop: Algorithm 1 of the paper, over any model's :class:`GenerationSession`.

Semantic and structure steps run unchanged. In the fidelity-refinement steps the guidance drops to one branch
(once, at the first fidelity step), every unit runs on a random projection of its tokens and is restored from its
own output at the previous step, and the last steps may be skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from .engine import graphs
from .fidelity import UnitOptions, fidelity_unit, rank_for, run_blocks, unit_seed
from .models.session import GenerationSession, rows_for
from .schedule import StageSchedule
from .timing import StepTimer

UnitObserver = Callable[[int, int, torch.Tensor], None]


@dataclass
class UnitOutputs:
    """Each unit's output at the last computed step: RTR's restoration source (per-generation state)."""

    tensors: list[torch.Tensor | None] = field(default_factory=list)
    hw: tuple[int, int] | None = None

    def keep_rows(self, rows: slice) -> None:
        self.tensors = [None if t is None else t[rows] for t in self.tensors]


def run_units(
    session: GenerationSession,
    units,
    k: int,
    step,
    x: torch.Tensor,
    outputs: UnitOutputs,
    options: UnitOptions,
    keep_outputs: bool,
    observer: UnitObserver | None = None,
) -> torch.Tensor:
    """Every unit of scale step ``k`` on its input ``x`` ``(R, h*w, C)``: full, or RP -> blocks -> RTR in a reduced
    step. This is the region a CUDA graph captures (``stagevar.engine.graphs``): it reads only ``x``, the session's
    workspace (KV cache, text rows, constants), ``outputs`` and ``options.seeds_table``, and writes the KV cache and
    ``outputs``, so replaying it on a new ``x`` runs the step again.

    Args:
        units: ``session.units(kind)``; step: the :class:`~stagevar.schedule` plan entry of step ``k``.
        outputs: each unit's output at the last computed step (read in a reduced step; written when
            ``keep_outputs``, i.e. the next step is reduced).
    Returns ``(R, h*w, C)``: the last unit's output.
    """
    for u, blocks in enumerate(units):
        if step.mode == "reduced":  # fidelity refinement: RP -> blocks on r rows -> RTR
            x = fidelity_unit(
                session,
                blocks,
                x,
                k,
                rank=rank_for(step.ratios[u], x.shape[1]),
                seed=options.unit_seed(k, u),
                cache=outputs.tensors[u],
                cache_hw=outputs.hw,
                options=options,
            )
        else:  # semantic and structure steps (and full fidelity steps): the model as it is
            if observer is not None:
                observer(k, u, x)
            x = run_blocks(session, blocks, x, k)
        if keep_outputs:
            outputs.tensors[u] = x
    if keep_outputs:
        outputs.hw = session.scales[k]
    return x


def scale_step(
    session: GenerationSession,
    units,
    k: int,
    step,
    outputs: UnitOutputs,
    options: UnitOptions,
    keep_outputs: bool,
    observer: UnitObserver | None = None,
) -> torch.Tensor:
    """The computed part of scale step ``k``: ``session.scale_input(k)``, then :func:`run_units`. One function over
    the session's state and ``outputs``, so that it can be traced whole; the head, sampling and code accumulation
    (``session.finish_scale``) stay outside it. Returns ``(R, h*w, C)``: the last unit's output."""
    x = session.scale_input(k)
    return run_units(session, units, k, step, x, outputs, options, keep_outputs, observer)


def computed_steps(plan) -> int:
    """How many steps of ``plan`` run: skipped steps are always the last ones, and nothing runs after the first."""
    return next((k for k, step in enumerate(plan) if step.mode == "skip"), len(plan))


def _switch_guidance(session: GenerationSession, step, outputs: UnitOutputs | None) -> None:
    """At the first step whose guidance differs from the session's, drop the other rows (once)."""
    if session.guidance == "cfg" and step.guidance != "cfg":  # (a session without CFG has one branch only)
        if outputs is not None:
            outputs.keep_rows(rows_for(session.guidance, step.guidance, session.batch))
        session.set_guidance(step.guidance)  # slices the KV cache and the text rows once


class _GraphedSteps:
    """The computed steps of a StageVAR generation as a :class:`stagevar.engine.graphs.StepProgram`: the region of
    step ``k`` is :func:`run_units`, whose op seeds come from the device table."""

    def __init__(self, session, schedule: StageSchedule, units, plan, options: UnitOptions):
        self.units, self.plan, self.options = units, plan, options
        self.steps = len(plan)
        backend = graphs.resolved_backend(options.backend, session)
        self.spec = ("stagevar", graphs.schedule_spec(schedule), tuple(len(u) for u in units), backend)
        self.seed_shape = (len(plan), len(units))

    def seed_values(self) -> list[list[int]]:
        return [[unit_seed(self.options.seed, k, u) for u in range(len(self.units))] for k in range(self.steps)]

    def new_state(self) -> UnitOutputs:
        return UnitOutputs([None] * len(self.units))

    def save(self, outputs: UnitOutputs):
        return list(outputs.tensors), outputs.hw

    def restore(self, outputs: UnitOutputs, saved) -> None:
        outputs.tensors, outputs.hw = list(saved[0]), saved[1]

    def prepare(self, session, k: int, outputs: UnitOutputs | None) -> None:
        _switch_guidance(session, self.plan[k], outputs)

    def region(self, session, k: int, x: torch.Tensor, outputs: UnitOutputs, seeds: torch.Tensor) -> torch.Tensor:
        # no timer inside the region: its Python does not run on replay (and events cannot be recorded in a capture)
        options = replace(self.options, timer=StepTimer(), seeds_table=seeds)
        keep_outputs = k + 1 < self.steps and self.plan[k + 1].mode == "reduced"
        return run_units(session, self.units, k, self.plan[k], x, outputs, options, keep_outputs)


def generate(
    session: GenerationSession,
    schedule: StageSchedule,
    *,
    seed: int | None = None,
    backend: str | None = None,
    observer: UnitObserver | None = None,
    timer: StepTimer | None = None,
    decode: bool = True,
    cuda_graphs: bool = False,
) -> torch.Tensor | None:
    """Run one generation under ``schedule`` and decode it.

    Args:
        session: a fresh :class:`~stagevar.models.session.GenerationSession` (Infinity, STAR, or a wrapped
            official model).
        schedule: the :class:`StageSchedule`.
        seed: base seed of the projections (default: ``schedule.seed``); step ``k``, unit ``u`` uses
            ``unit_seed(seed, k, u)``.
        backend: backend of the two ops (``None``: ``stagevar_kernels.default_backend`` of the device).
        observer: called as ``observer(step, unit, x)`` with each unit's input ``(R, h*w, C)`` at full steps
            (calibration records them).
        timer: optional :class:`StepTimer`; labels are ``"scale{k}"``, ``"decode"`` and ``"ops"`` (the two
            stagevar ops, summed).
        decode: decode the codes (otherwise return ``None``; the codes stay in the session).
        cuda_graphs: capture every computed step's :func:`run_units` in a CUDA graph at the first generation of a
            key and replay it in later ones (:mod:`stagevar.engine.graphs`: the key, the workspace a graphed model
            keeps, the ``"capture"`` timer label). Needs a CUDA session; ``ValueError`` naming ``cuda_graphs``
            otherwise, with an ``observer``, or for a session that cannot be graphed. Graphed equals eager bit for
            bit; the ``"ops"`` label is not timed inside graphs.
    Returns:
        ``(B, 3, H, W)`` float images in ``[0, 1]``, or ``None`` without ``decode``.
    """
    if cuda_graphs:
        graphs.check_graphable(session, observer)
    timer = timer or StepTimer()
    options = UnitOptions.from_schedule(schedule, backend=backend, timer=timer, seed=seed)
    units = session.units(schedule.unit)
    plan = schedule.plan(len(session.scales), len(units))
    plan = plan[: computed_steps(plan)]  # skipped steps hold no keys and sample nothing
    plan_scales = getattr(session, "plan_scales", None)
    if plan_scales is not None and plan:
        plan_scales(len(plan))  # the KV cache holds the computed scales only: `paper` peaks below vanilla
    with torch.inference_mode():
        if cuda_graphs:
            graphs.run_steps(session, _GraphedSteps(session, schedule, units, plan, options), timer)
        else:
            outputs = UnitOutputs([None] * len(units))
            for k, step in enumerate(plan):
                timer.start(f"scale{k}")
                _switch_guidance(session, step, outputs)
                keep_outputs = k + 1 < len(plan) and plan[k + 1].mode == "reduced"
                x = scale_step(session, units, k, step, outputs, options, keep_outputs, observer)
                session.finish_scale(k, x)  # logits, sampling and code accumulation are unchanged
                timer.stop(f"scale{k}")
        if not decode:
            return None
        timer.start("decode")
        images = session.decode()
        timer.stop("decode")
    return images
