"""Procedural captioned images: 1-3 flat-coloured shapes on black, 64x64, deterministic from ``(seed, index)``.

Every sample is a structured :class:`Spec` (what the caption says), its caption, and a layout (where the shapes are).
Five kinds of caption, after GenEval's tasks:

- ``single``: "a red circle" (one object anywhere);
- ``position``: "a red circle on the left" / "at the top" / "at the bottom" / "on the right" / "in the centre";
- ``count``: "two blue squares", "three green triangles";
- ``two``: "a red circle and a blue square" (two colours);
- ``relation``: "a green triangle above a yellow circle" (``above``, ``below``, ``to the left of``,
  ``to the right of``).

Coordinates are in pixels of the 64x64 canvas (pixel ``(i, j)`` has centre ``(j + 0.5, i + 0.5)``). Rendering is
vectorised in torch (:func:`render`), so training batches are drawn on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SIZE = 64
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 210),
    "cyan": (40, 210, 220),
}
BACKGROUND = (0, 0, 0)
SHAPES = ("circle", "square", "triangle")
KINDS = ("single", "position", "count", "two", "relation")
PLACES = ("left", "right", "top", "bottom", "centre")
RELATIONS = ("above", "below", "left of", "right of")
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}

_PLACE_WORDS = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
_RELATION_WORDS = {"above": "above", "below": "below", "left of": "to the left of", "right of": "to the right of"}

# Half-extent of a shape of radius r: the triangle's circumradius is 1.25 r (equal areas would make it too large).
_TRIANGLE_R = 1.25
_SQUARE_HALF = 0.886  # a square of half-side 0.886 r has the area of the circle of radius r


@dataclass(frozen=True)
class Obj:
    """``count`` objects of one colour and shape."""

    colour: str
    shape: str
    count: int = 1


@dataclass(frozen=True)
class Spec:
    """What a caption asks for: ``kind`` (see the module docstring), its ``objects`` and, for ``position`` and
    ``relation``, ``where`` (a place of :data:`PLACES` or a relation of :data:`RELATIONS`: objects[0] where
    objects[1])."""

    kind: str
    objects: tuple[Obj, ...]
    where: str | None = None


@dataclass(frozen=True)
class Placed:
    """One drawn shape: colour, shape, centre ``(cx, cy)`` and radius ``r`` in pixels."""

    colour: str
    shape: str
    cx: float
    cy: float
    r: float

    @property
    def extent(self) -> float:
        return self.r * (_TRIANGLE_R if self.shape == "triangle" else 1.0)


def caption(spec: Spec) -> str:
    """The caption of ``spec``, e.g. ``"a green triangle above a yellow circle"``."""

    def noun(o: Obj) -> str:
        return f"{COUNT_WORDS[o.count]} {o.colour} {o.shape}{'s' if o.count > 1 else ''}"

    first = noun(spec.objects[0])
    if spec.kind in ("single", "count"):
        return first
    if spec.kind == "position":
        return f"{first} {_PLACE_WORDS[spec.where]}"
    if spec.kind == "two":
        return f"{first} and {noun(spec.objects[1])}"
    return f"{first} {_RELATION_WORDS[spec.where]} {noun(spec.objects[1])}"


def words() -> list[str]:
    """Every word a caption can contain (the text encoder's vocabulary), in a fixed order."""
    out = ["a", "two", "three", "and", "on", "the", "at", "in", "to", "of", "above", "below"]
    out += list(COLOURS) + list(SHAPES) + [s + "s" for s in SHAPES] + ["left", "right", "top", "bottom", "centre"]
    return out


def place_ok(where: str, cx: float, cy: float) -> bool:
    """Whether a centre counts as ``where`` (a place): the checker's rule; the sampler keeps a margin inside it."""
    c = SIZE / 2
    return {
        "left": cx < 0.375 * SIZE,
        "right": cx > 0.625 * SIZE,
        "top": cy < 0.375 * SIZE,
        "bottom": cy > 0.625 * SIZE,
        "centre": abs(cx - c) <= 0.125 * SIZE and abs(cy - c) <= 0.125 * SIZE,
    }[where]


def relation_ok(where: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether centre ``a`` is ``where`` (a relation) of centre ``b``: at least 6 px apart along the relation's
    axis, and more along it than across it."""
    dx, dy = b[0] - a[0], b[1] - a[1]  # b minus a: "a above b" means dy > 0
    along, across = {"above": (dy, dx), "below": (-dy, dx), "left of": (dx, dy), "right of": (-dx, dy)}[where]
    return along > 6 and along >= abs(across)


def _rng(seed: int, index: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise ValueError(f"seed, index: expected non-negative ints, got {seed}, {index}")
    return np.random.default_rng((int(seed), int(index)))


def _place(rng, objs: list[tuple[str, str, float]], accept, tries: int = 2000) -> list[Placed]:
    """Rejection-sample centres for ``objs`` ``(colour, shape, r)``: inside the canvas, 3 px apart, ``accept``-ed."""
    for _ in range(tries):
        placed = []
        for colour, shape, r in objs:
            e = r * (_TRIANGLE_R if shape == "triangle" else 1.0) + 2
            placed.append(Placed(colour, shape, float(rng.uniform(e, SIZE - e)), float(rng.uniform(e, SIZE - e)), r))
        apart = all(
            np.hypot(p.cx - q.cx, p.cy - q.cy) >= p.extent + q.extent + 3
            for i, p in enumerate(placed)
            for q in placed[i + 1 :]
        )
        if apart and accept(placed):
            return placed
    raise RuntimeError("no layout found")  # not reached with the sizes used here (2000 tries)


def _place_with_margin(where: str, p: Placed) -> bool:
    # the sampler's regions sit 4 px inside the checker's, so a sample is unambiguous
    c, m = SIZE / 2, 4
    return {
        "left": p.cx < 0.375 * SIZE - m and abs(p.cy - c) < 0.25 * SIZE,
        "right": p.cx > 0.625 * SIZE + m and abs(p.cy - c) < 0.25 * SIZE,
        "top": p.cy < 0.375 * SIZE - m and abs(p.cx - c) < 0.25 * SIZE,
        "bottom": p.cy > 0.625 * SIZE + m and abs(p.cx - c) < 0.25 * SIZE,
        "centre": abs(p.cx - c) <= 0.125 * SIZE - m and abs(p.cy - c) <= 0.125 * SIZE - m,
    }[where]


def _relation_with_margin(where: str, a: Placed, b: Placed) -> bool:
    dx, dy = b.cx - a.cx, b.cy - a.cy
    along, across = {"above": (dy, dx), "below": (-dy, dx), "left of": (dx, dy), "right of": (-dx, dy)}[where]
    return along > 12 and along >= 1.5 * abs(across)


def sample(seed: int, index: int) -> tuple[Spec, list[Placed]]:
    """The spec and layout of sample ``index`` of the stream ``seed`` (pure function of both)."""
    rng = _rng(seed, index)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    colours, shapes = list(COLOURS), list(SHAPES)

    def pick_obj():
        return colours[int(rng.integers(len(colours)))], shapes[int(rng.integers(len(shapes)))]

    def radius(lo=7.0, hi=10.0):
        return float(rng.uniform(lo, hi))

    if kind == "single":
        c, s = pick_obj()
        return Spec(kind, (Obj(c, s),)), _place(rng, [(c, s, radius())], lambda p: True)
    if kind == "position":
        c, s = pick_obj()
        where = PLACES[int(rng.integers(len(PLACES)))]
        layout = _place(rng, [(c, s, radius())], lambda p: _place_with_margin(where, p[0]))
        return Spec(kind, (Obj(c, s),), where), layout
    if kind == "count":
        c, s = pick_obj()
        n = int(rng.integers(2, 4))
        layout = _place(rng, [(c, s, radius(6.0, 8.0)) for _ in range(n)], lambda p: True)
        return Spec(kind, (Obj(c, s, n),)), layout
    c1, s1 = pick_obj()
    c2 = colours[int(rng.integers(len(colours) - 1))]
    c2 = colours[-1] if c2 == c1 else c2  # a different colour: each object has its own
    s2 = shapes[int(rng.integers(len(shapes)))]
    objs = [(c1, s1, radius()), (c2, s2, radius())]
    if kind == "two":
        return Spec(kind, (Obj(c1, s1), Obj(c2, s2))), _place(rng, objs, lambda p: True)
    where = RELATIONS[int(rng.integers(len(RELATIONS)))]
    layout = _place(rng, objs, lambda p: _relation_with_margin(where, p[0], p[1]))
    return Spec(kind, (Obj(c1, s1), Obj(c2, s2)), where), layout


def specs(seed: int, indices) -> list[Spec]:
    """The specs of ``indices`` of stream ``seed``."""
    return [sample(seed, int(i))[0] for i in indices]


def layout_tensors(layouts: list[list[Placed]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``layouts`` (each up to 3 shapes) -> ``params`` fp32 ``(B, K, 4)`` (shape id, -1 for none; cx; cy; r) and
    ``rgb`` fp32 ``(B, K, 3)`` in [0, 1], K = the most shapes of a layout."""
    K = max(1, max((len(x) for x in layouts), default=1))
    params = [[[SHAPES.index(p.shape), p.cx, p.cy, p.r] for p in x] + [[-1, 0, 0, 0]] * (K - len(x)) for x in layouts]
    rgb = [[COLOURS[p.colour] for p in x] + [BACKGROUND] * (K - len(x)) for x in layouts]
    return torch.tensor(params, dtype=torch.float32), torch.tensor(rgb, dtype=torch.float32) / 255


def render_tensors(params: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Draw the shapes of :func:`layout_tensors` in order on black, on their device: float ``(B, 3, 64, 64)``."""
    B, K = params.shape[:2]
    device = params.device
    coords = torch.arange(SIZE, device=device, dtype=torch.float32) + 0.5
    dx = coords[None, None, None, :] - params[:, :, 1, None, None]  # (B, K, 1, W)
    dy = coords[None, None, :, None] - params[:, :, 2, None, None]  # (B, K, H, 1)
    r = params[:, :, 3, None, None]
    shape = params[:, :, 0, None, None]
    circle = dx.square() + dy.square() <= r.square()
    square = torch.maximum(dx.abs(), dy.abs()) <= _SQUARE_HALF * r
    rt = _TRIANGLE_R * r  # upward equilateral triangle inscribed in the circle of radius rt
    triangle = (dy <= rt / 2) & (dx.abs() * 3**0.5 <= dy + rt)
    mask = torch.where(shape == 0, circle, torch.where(shape == 1, square, triangle)) & (shape >= 0)  # (B, K, H, W)
    img = torch.tensor(BACKGROUND, device=device, dtype=torch.float32).div(255)[None, :, None, None]
    img = img.expand(B, 3, SIZE, SIZE)
    for k in range(K):
        img = torch.where(mask[:, k, None], rgb[:, k, :, None, None], img)
    return img.contiguous()


def render(layouts: list[list[Placed]], device=None) -> torch.Tensor:
    """Draw ``layouts`` (each up to 3 shapes, painted in order on black): float RGB ``(B, 3, 64, 64)`` in [0, 1]."""
    params, rgb = layout_tensors(layouts)
    return render_tensors(params.to(device), rgb.to(device))


def batch(seed: int, indices, device=None) -> tuple[torch.Tensor, list[str], list[Spec]]:
    """Images ``(B, 3, 64, 64)`` in [0, 1], captions and specs of ``indices`` of stream ``seed``."""
    drawn = [sample(seed, int(i)) for i in indices]
    return render([lay for _, lay in drawn], device), [caption(s) for s, _ in drawn], [s for s, _ in drawn]
