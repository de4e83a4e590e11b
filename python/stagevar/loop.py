"""The StageVAR generation loop: Algorithm 1 of the paper, over any model's :class:`GenerationSession`.

Semantic and structure steps run unchanged. In the fidelity-refinement steps the guidance drops to one branch
(once, at the first fidelity step), every unit runs on a random projection of its tokens and is restored from its
own output at the previous step, and the last steps may be skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

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
    """The computed part of scale step ``k``: its input, then every unit (full, or RP -> blocks -> RTR in a reduced
    step). One function over the session's state and ``outputs``, so that it can be traced or captured whole; the
    head, sampling and code accumulation (``session.finish_scale``) stay outside it.

    Args:
        units: ``session.units(kind)``; step: the :class:`~stagevar.schedule` plan entry of step ``k``.
        outputs: each unit's output at the last computed step (read in a reduced step; written when
            ``keep_outputs``, i.e. the next step is reduced).
    Returns ``(R, h*w, C)``: the last unit's output.
    """
    x = session.scale_input(k)
    for u, blocks in enumerate(units):
        if step.mode == "reduced":  # fidelity refinement: RP -> blocks on r rows -> RTR
            x = fidelity_unit(
                session,
                blocks,
                x,
                k,
                rank=rank_for(step.ratios[u], x.shape[1]),
                seed=unit_seed(options.seed, k, u),
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


def generate(
    session: GenerationSession,
    schedule: StageSchedule,
    *,
    seed: int | None = None,
    backend: str | None = None,
    observer: UnitObserver | None = None,
    timer: StepTimer | None = None,
    decode: bool = True,
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
    Returns:
        ``(B, 3, H, W)`` float images in ``[0, 1]``, or ``None`` without ``decode``.
    """
    timer = timer or StepTimer()
    options = UnitOptions.from_schedule(schedule, backend=backend, timer=timer, seed=seed)
    units = session.units(schedule.unit)
    plan = schedule.plan(len(session.scales), len(units))
    outputs = UnitOutputs([None] * len(units))
    with torch.inference_mode():
        for k, step in enumerate(plan):
            if step.mode == "skip":
                break  # skipped steps are always the last ones: nothing more runs or accumulates
            timer.start(f"scale{k}")
            if session.guidance == "cfg" and step.guidance != "cfg":  # (a session without CFG has one branch only)
                outputs.keep_rows(rows_for(session.guidance, step.guidance, session.batch))
                session.set_guidance(step.guidance)  # slices the KV cache and the text rows once
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
