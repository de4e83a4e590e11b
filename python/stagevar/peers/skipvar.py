"""SkipVAR's fixed acceleration modes (Li et al., 2025), as schedules of this package: a peer baseline.

SkipVAR decides per image, with small classifiers on frequency features of two early previews, between skipping
the last one to three steps and replacing the unconditional branch by the conditional one (guidance 1) from one of
the last three steps on. The classifiers are not reproduced here; the modes they choose between are, so a
benchmark can bracket SkipVAR's adaptive speed (its mix of modes lies between the mildest and the strongest).

Modes (Infinity at 1024px: the last three steps are 40, 48 and 64):

- ``skipvar-skip1``, ``-skip2``, ``-skip3``: skip the last 1, 2 or 3 steps;
- ``skipvar-cond1``, ``-cond2``, ``-cond3``: only the prompt rows from the last 1, 2 or 3 steps on.
"""

from __future__ import annotations

from ..schedule import StageSchedule

MODES: dict[str, StageSchedule] = {
    **{f"skipvar-skip{n}": StageSchedule((0.0,) * n, projection="none", name=f"skipvar-skip{n}") for n in (1, 2, 3)},
    **{
        f"skipvar-cond{n}": StageSchedule((1.0,) * n, guidance="cond", projection="none", name=f"skipvar-cond{n}")
        for n in (1, 2, 3)
    },
}


def mode(name: str, unit: str = "chunk") -> StageSchedule:
    """The schedule of SkipVAR mode ``name`` for units of kind ``unit`` (``block`` for STAR)."""
    if name not in MODES:
        raise ValueError(f"name: expected one of {sorted(MODES)}, got {name!r}")
    return MODES[name].with_(unit=unit)
