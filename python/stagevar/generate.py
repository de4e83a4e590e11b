"""The StageVAR generation loop: Algorithm 1 of the paper, over any model's :class:`GenerationSession`.

Semantic and structure steps run unchanged. In the fidelity-refinement steps the guidance drops to one branch
(once, at the first fidelity step), every unit runs on a random projection of its tokens and is restored from its
own output at the previous step, and the last steps may be skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .fidelity import fidelity_unit, rank_for, run_blocks, unit_seed
from .models.session import rows_for
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


def generate(
    session,
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
    base_seed = schedule.seed if seed is None else seed
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
            x = session.scale_input(k)
            for u, blocks in enumerate(units):
                if step.mode == "reduced":  # fidelity refinement: RP -> blocks on r rows -> RTR
                    x = fidelity_unit(
                        session,
                        blocks,
                        x,
                        k,
                        rank=rank_for(step.ratios[u], x.shape[1]),
                        seed=unit_seed(base_seed, k, u),
                        cache=outputs.tensors[u],
                        cache_hw=outputs.hw,
                        restore_mode=schedule.restore_mode,
                        projection=schedule.projection,
                        restoration=schedule.restoration,
                        backend=backend,
                        timer=timer,
                    )
                else:  # semantic and structure steps (and full fidelity steps): the model as it is
                    if observer is not None:
                        observer(k, u, x)
                    x = run_blocks(session, blocks, x, k)
                if keep_outputs:
                    outputs.tensors[u] = x
            if keep_outputs:
                outputs.hw = session.scales[k]
            session.finish_scale(k, x)  # logits, sampling and code accumulation are unchanged
            timer.stop(f"scale{k}")
        if not decode:
            return None
        timer.start("decode")
        images = session.decode()
        timer.stop("decode")
    return images
