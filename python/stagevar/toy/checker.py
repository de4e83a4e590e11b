"""An analytic, GenEval-like checker of the toy images: does an image show what its caption's :class:`Spec` asks?

Detection, from the pixels only:

1. each pixel takes the nearest palette colour (:data:`~stagevar.toy.data.COLOURS` or the black background) if it is
   within :data:`COLOUR_RADIUS` of it in RGB ([0, 1] units), else no label;
2. the 4-connected components of each colour with at least :data:`MIN_AREA` pixels are the objects;
3. an object's shape comes from its fill ratio (area over bounding-box area: square 1, circle pi/4, triangle 1/2)
   with a bounding box of aspect ratio within [0.6, 1.6]; components of no shape (``"unknown"``: smears, noise)
   are not objects for the scores.

Criteria (each 0 or 1 per image; ``None`` where the caption does not ask for it):

- ``colour``: every colour named is present (any shape); ``shape``: every shape named is present (any colour);
- ``count``: each named (colour, shape) appears exactly as often as said ("a" = 1);
- ``position``: the named place holds for the object's centre (``position`` captions) or the relation holds
  between the two objects' centres (``relation`` captions);
- ``two_object``: both named (colour, shape) objects are present (``two`` and ``relation`` captions);
- ``overall``: every criterion that applies holds (GenEval's per-prompt correctness).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from .data import BACKGROUND, COLOURS, Spec, place_ok, relation_ok

COLOUR_RADIUS = 0.3  # below half the smallest distance between two palette colours (blue-purple: 0.48)
MIN_AREA = 25  # the smallest object drawn (a triangle of r = 6) has about 70 pixels
CRITERIA = ("colour", "shape", "count", "position", "two_object", "overall")

_PALETTE = np.array([BACKGROUND, *COLOURS.values()], dtype=np.float32) / 255  # row 0: background
_NAMES = ["background", *COLOURS]


@dataclass(frozen=True)
class Detected:
    """One object found: ``colour``, ``shape`` (``"unknown"`` if none fits), ``area`` in pixels, centre."""

    colour: str
    shape: str
    area: int
    cx: float
    cy: float


def _as_hwc(image) -> np.ndarray:
    """float ``(3, H, W)`` in [0, 1] (tensor or array) or uint8 ``(H, W, 3)`` -> float32 ``(H, W, 3)`` in [0, 1]."""
    a = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    if a.dtype == np.uint8:
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"image: uint8 images must be (H, W, 3), got {a.shape}")
        return a.astype(np.float32) / 255
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"image: float images must be (3, H, W), got {a.shape}")
    return np.transpose(a.astype(np.float32), (1, 2, 0))


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a bool ``(H, W)`` mask, each as an int array ``(n, 2)`` of (row, col)."""
    seen = np.zeros_like(mask, dtype=bool)
    H, W = mask.shape
    out = []
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        queue, pix = deque([(r0, c0)]), []
        while queue:
            r, c = queue.popleft()
            pix.append((r, c))
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < H and 0 <= cc < W and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    queue.append((rr, cc))
        out.append(np.array(pix))
    return out


def _shape_of(pix: np.ndarray) -> str:
    h = pix[:, 0].max() - pix[:, 0].min() + 1
    w = pix[:, 1].max() - pix[:, 1].min() + 1
    if not 0.6 <= h / w <= 1.6:
        return "unknown"
    fill = len(pix) / (h * w)
    if fill >= 0.9:
        return "square"
    if fill >= 0.66:
        return "circle"
    if fill >= 0.36:
        return "triangle"
    return "unknown"


def detect(image) -> list[Detected]:
    """The objects in ``image`` (float ``(3, H, W)`` in [0, 1] or uint8 ``(H, W, 3)``), largest first."""
    hwc = _as_hwc(image)
    dist = np.linalg.norm(hwc[:, :, None, :] - _PALETTE[None, None], axis=-1)  # (H, W, 1 + colours)
    label = dist.argmin(-1)
    label[dist.min(-1) > COLOUR_RADIUS] = -1
    found = []
    for k in range(1, len(_NAMES)):
        for pix in _components(label == k):
            if len(pix) >= MIN_AREA:
                cy, cx = pix.mean(0) + 0.5
                found.append(Detected(_NAMES[k], _shape_of(pix), len(pix), float(cx), float(cy)))
    return sorted(found, key=lambda d: -d.area)


def score(image, spec: Spec) -> dict[str, float | None]:
    """Each criterion of :data:`CRITERIA` for ``image`` against ``spec``: 1.0, 0.0, or None where it does not apply."""
    found = [d for d in detect(image) if d.shape != "unknown"]

    def matching(o):
        return [d for d in found if d.colour == o.colour and d.shape == o.shape]

    out: dict[str, float | None] = dict.fromkeys(CRITERIA)
    out["colour"] = float(all(any(d.colour == o.colour for d in found) for o in spec.objects))
    out["shape"] = float(all(any(d.shape == o.shape for d in found) for o in spec.objects))
    out["count"] = float(all(len(matching(o)) == o.count for o in spec.objects))
    if spec.kind == "position":
        m = matching(spec.objects[0])
        out["position"] = float(bool(m) and place_ok(spec.where, m[0].cx, m[0].cy))
    if spec.kind in ("two", "relation"):
        out["two_object"] = float(all(matching(o) for o in spec.objects))
    if spec.kind == "relation":
        a, b = matching(spec.objects[0]), matching(spec.objects[1])
        out["position"] = float(bool(a and b) and relation_ok(spec.where, (a[0].cx, a[0].cy), (b[0].cx, b[0].cy)))
    out["overall"] = float(all(v == 1.0 for k, v in out.items() if k != "overall" and v is not None))
    return out


def mean_scores(scores: list[dict[str, float | None]]) -> dict[str, float]:
    """Mean of each criterion over the images where it applies (criteria that never apply are left out)."""
    out = {}
    for k in CRITERIA:
        vals = [s[k] for s in scores if s[k] is not None]
        if vals:
            out[k] = math.fsum(vals) / len(vals)
    return out
