"""Scale schedules of Infinity (facts of ``infinity/utils/dynamic_resolution.py``).

Every aspect-ratio template (h/w) has 13 token grids; the sizes '0.06M', '0.25M', '0.60M', '1M' use the first
7, 10, 12, 13 of them. Inverse ratios are the transposed grids, keyed ``int(1/r*1000)/1000`` (0.8, 0.75, 0.666, ...).
Schedules here are lists of ``(h, w)`` Python ints (the time axis of upstream's ``(t, h, w)`` is always 1 at inference).
"""

from __future__ import annotations

import numpy as np

VAE_STRIDE = 16
PN_LENGTHS = {"0.06M": 7, "0.25M": 10, "0.60M": 12, "1M": 13}

_BASE = {
    1.000: [
        (1, 1),
        (2, 2),
        (4, 4),
        (6, 6),
        (8, 8),
        (12, 12),
        (16, 16),
        (20, 20),
        (24, 24),
        (32, 32),
        (40, 40),
        (48, 48),
        (64, 64),
    ],
    1.250: [
        (1, 1),
        (2, 2),
        (3, 3),
        (5, 4),
        (10, 8),
        (15, 12),
        (20, 16),
        (25, 20),
        (30, 24),
        (35, 28),
        (45, 36),
        (55, 44),
        (70, 56),
    ],
    1.333: [
        (1, 1),
        (2, 2),
        (4, 3),
        (8, 6),
        (12, 9),
        (16, 12),
        (20, 15),
        (24, 18),
        (28, 21),
        (36, 27),
        (48, 36),
        (60, 45),
        (72, 54),
    ],
    1.500: [
        (1, 1),
        (2, 2),
        (3, 2),
        (6, 4),
        (9, 6),
        (15, 10),
        (21, 14),
        (27, 18),
        (33, 22),
        (39, 26),
        (48, 32),
        (63, 42),
        (78, 52),
    ],
    1.750: [
        (1, 1),
        (2, 2),
        (3, 3),
        (7, 4),
        (11, 6),
        (14, 8),
        (21, 12),
        (28, 16),
        (35, 20),
        (42, 24),
        (56, 32),
        (70, 40),
        (84, 48),
    ],
    2.000: [
        (1, 1),
        (2, 2),
        (4, 2),
        (6, 3),
        (10, 5),
        (16, 8),
        (22, 11),
        (30, 15),
        (38, 19),
        (46, 23),
        (60, 30),
        (74, 37),
        (90, 45),
    ],
    2.500: [
        (1, 1),
        (2, 2),
        (5, 2),
        (10, 4),
        (15, 6),
        (20, 8),
        (25, 10),
        (30, 12),
        (40, 16),
        (50, 20),
        (65, 26),
        (80, 32),
        (100, 40),
    ],
    3.000: [
        (1, 1),
        (2, 2),
        (6, 2),
        (9, 3),
        (15, 5),
        (21, 7),
        (27, 9),
        (36, 12),
        (45, 15),
        (54, 18),
        (72, 24),
        (90, 30),
        (111, 37),
    ],
}


def _all_grids() -> dict[float, list[tuple[int, int]]]:
    out: dict[float, list[tuple[int, int]]] = {}
    for ratio, hws in _BASE.items():
        out[ratio] = list(hws)
        if ratio != 1.0:
            out[int(1 / ratio * 1000) / 1000] = [(w, h) for h, w in hws]
    return out


TEMPLATE_GRIDS: dict[float, list[tuple[int, int]]] = _all_grids()
H_DIV_W_TEMPLATES: list[float] = list(TEMPLATE_GRIDS)  # upstream order: 1.0, 1.25, 0.8, 1.333, 0.75, ...


def nearest_template(h_div_w: float) -> float:
    """The template closest to ``h_div_w`` (upstream: ``argmin |templates - h/w|``, first one on ties)."""
    arr = np.array(H_DIV_W_TEMPLATES)
    return H_DIV_W_TEMPLATES[int(np.argmin(np.abs(float(h_div_w) - arr)))]


def get_scale_schedule(h_div_w: float = 1.0, pn: str = "1M") -> list[tuple[int, int]]:
    """The ``(h, w)`` token grids of template ``nearest_template(h_div_w)`` at size ``pn``."""
    if pn not in PN_LENGTHS:
        raise ValueError(f"pn: expected one of {list(PN_LENGTHS)}, got {pn!r}")
    return list(TEMPLATE_GRIDS[nearest_template(h_div_w)][: PN_LENGTHS[pn]])


def normalize_schedule(scale_schedule) -> list[tuple[int, int]]:
    """Accept ``(h, w)`` or upstream ``(1, h, w)`` entries (numpy ints too); return ``(h, w)`` Python ints."""
    out = []
    for item in scale_schedule:
        item = tuple(int(v) for v in item)
        if len(item) == 3:
            if item[0] != 1:
                raise ValueError(f"scale_schedule: only t == 1 is supported at inference, got {item}")
            item = item[1:]
        if len(item) != 2:
            raise ValueError(f"scale_schedule: expected (h, w) or (1, h, w) entries, got {item}")
        out.append(item)
    return out


def rope_grid(scale_schedule) -> tuple[int, int]:
    """The final grid ``(uph, upw)`` that RoPE positions are expressed in: the '1M' grid of the template this schedule
    is a prefix of (upstream ``rope2d_normalized_by_hw=2``). Raises ``ValueError`` for a schedule of no template."""
    sched = normalize_schedule(scale_schedule)
    for grids in TEMPLATE_GRIDS.values():
        if grids[: len(sched)] == sched:
            return grids[-1]
    raise ValueError(f"scale_schedule {sched} is not a prefix of any predefined Infinity template")


def scale_starts(scale_schedule) -> list[int]:
    """Token offset of each scale in the full sequence (e.g. 1:1 1M: 0, 1, 5, 21, ..., 6425)."""
    sched = normalize_schedule(scale_schedule)
    starts, total = [], 0
    for h, w in sched:
        starts.append(total)
        total += h * w
    return starts


def image_size(scale_schedule) -> tuple[int, int]:
    """Pixel size ``(H, W)`` of the decoded image (16 pixels per token of the last grid)."""
    h, w = normalize_schedule(scale_schedule)[-1]
    return h * VAE_STRIDE, w * VAE_STRIDE
