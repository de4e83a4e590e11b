"""Rank calibration: the paper's predetermination strategy (section 3.3, appendix A.1).

Vanilla generations run over a set of prompts; at each fidelity step and unit the unit's input ``F`` (M x C,
one per row of the guidance the schedule will use) is decomposed, and the smallest rank ``r`` whose energy ratio
``sum_{i<=r} s_i^2 / sum_i s_i^2`` reaches ``alpha`` is recorded (Eq. 4). The mean ratio ``r / M`` per unit and
step becomes the schedule's per-unit rank ratio; the standard deviation shows how stable it is across prompts
(the paper's Tables 7-9). The paper predetermines ranks because that deviation is an order of magnitude below the
mean (appendix A.1); the report flags every entry where it is not.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from .loop import generate
from .models.session import rows_for
from .schedule import StageSchedule

STABLE_RATIO = 0.1  # std below a tenth of the mean: the paper's stability assumption for predetermined ranks


def energy_rank(features: torch.Tensor, alpha: float) -> torch.Tensor:
    """Smallest ``r`` with energy ratio ``>= alpha`` for each matrix of ``features`` ``(R, M, C)``: int64 ``(R,)``."""
    s2 = torch.linalg.svdvals(features.double()) ** 2
    energy = s2.cumsum(dim=-1) / s2.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return (energy < alpha - 1e-12).sum(dim=-1) + 1


@dataclass
class Calibration:
    """Rank ratios ``r / M`` observed per (fidelity step offset, unit); offset 0 is the first fidelity step."""

    alpha: float
    base: StageSchedule
    samples: dict[tuple[int, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    grids: dict[int, tuple[int, int]] = field(default_factory=dict)

    def mean(self, offset: int, unit: int) -> float:
        return statistics.fmean(self.samples[(offset, unit)])

    def std(self, offset: int, unit: int) -> float:
        values = self.samples[(offset, unit)]
        return statistics.pstdev(values) if len(values) > 1 else 0.0

    @property
    def units(self) -> int:
        return 1 + max(u for _, u in self.samples) if self.samples else 0

    def stable(self, offset: int, unit: int) -> bool:
        """Whether the std is an order of magnitude below the mean (``std < STABLE_RATIO * mean``)."""
        return self.std(offset, unit) < STABLE_RATIO * self.mean(offset, unit)

    def unstable(self) -> list[tuple[int, int]]:
        """The (offset, unit) entries whose std is not an order of magnitude below their mean."""
        return [(o, u) for o in sorted(self.grids) for u in range(self.units) if not self.stable(o, u)]

    def table(self) -> str:
        """Mean ± standard deviation of the rank ratio, one row per unit, one column per fidelity step; entries whose
        std is not an order of magnitude below the mean are marked ``!`` and counted in a last line."""
        offsets = sorted(self.grids)
        head = ["unit \\ scale"] + [f"{h}x{w}" for h, w in (self.grids[o] for o in offsets)]
        rows = [head]
        for u in range(self.units):
            cells = [
                f"{self.mean(o, u):.3f} ± {self.std(o, u):.4f}" + ("" if self.stable(o, u) else " !") for o in offsets
            ]
            rows.append([f"unit {u}"] + cells)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        bad, total = len(self.unstable()), len(offsets) * self.units
        samples = min((len(v) for v in self.samples.values()), default=0)
        if bad:
            lines.append(
                f"! std not an order of magnitude below the mean in {bad} of {total} entries ({samples} samples each): "
                "predetermined ranks there assume a stability the features do not show"
            )
        else:
            lines.append(
                f"std below a tenth of the mean in all {total} entries ({samples} samples each), as the paper assumes"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The table as JSON-ready data: one entry per (fidelity step, unit) with mean, std, count and stability."""
        offsets = sorted(self.grids)
        entries = [
            {
                "offset": o,
                "grid": list(self.grids[o]),
                "unit": u,
                "mean": self.mean(o, u),
                "std": self.std(o, u),
                "samples": len(self.samples[(o, u)]),
                "stable": self.stable(o, u),
            }
            for o in offsets
            for u in range(self.units)
        ]
        return {
            "alpha": self.alpha,
            "base": self.base.name,
            "unit_kind": self.base.unit,
            "units": self.units,
            "grids": [list(self.grids[o]) for o in offsets],
            "stable_ratio": STABLE_RATIO,
            "all_stable": all(e["stable"] for e in entries),
            "entries": entries,
        }

    def save_table(self, path) -> None:
        """Write :meth:`to_dict` as JSON at ``path`` (atomically)."""
        from .evaluation.layouts import save_text

        save_text(json.dumps(self.to_dict(), indent=2) + "\n", path)

    def schedule(self) -> StageSchedule:
        """``base`` with per-unit mean ratios at its reduced steps (skipped and full steps are kept)."""
        ratios = []
        for offset, spec in enumerate(self.base.rank_ratios):
            values = spec if isinstance(spec, tuple) else (spec,)
            if self.base.projection == "none" or all(v == 0.0 for v in values):
                ratios.append(spec)
            else:
                ratios.append(tuple(round(max(self.mean(offset, u), 1e-4), 4) for u in range(self.units)))
        return self.base.with_(rank_ratios=tuple(ratios), name=f"calibrated-alpha{self.alpha:g}")


def calibrate(sessions: Iterable, base: StageSchedule, alpha: float = 0.96) -> Calibration:
    """Record energy ranks over vanilla generations.

    Args:
        sessions: fresh generation sessions (one per prompt batch) of the model to calibrate.
        base: the schedule whose fidelity steps, unit kind and guidance are calibrated.
        alpha: the energy threshold in (0, 1] (the paper's 0.96 gives 17.6% on Infinity-2B).
    Returns:
        a :class:`Calibration`; ``.schedule()`` is the calibrated schedule, ``.table()`` the report.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha: must lie in (0, 1], got {alpha}")
    if not base.rank_ratios:
        raise ValueError("base: the schedule has no fidelity steps to calibrate")
    result = Calibration(alpha=alpha, base=base)
    vanilla = StageSchedule((), projection="none", unit=base.unit, name="vanilla")
    count = 0
    for session in sessions:
        first = len(session.scales) - len(base.rank_ratios)
        rows = rows_for(session.guidance, base.guidance, session.batch)

        def observe(step, unit, x, first=first, rows=rows, session=session):
            if step < first:
                return
            ranks = energy_rank(x[rows], alpha)
            result.samples[(step - first, unit)].extend((ranks.double() / x.shape[1]).tolist())
            result.grids[step - first] = tuple(session.scales[step])

        generate(session, vanilla, observer=observe)
        count += 1
    if count == 0:
        raise ValueError("sessions: no generation to calibrate on")
    return result
