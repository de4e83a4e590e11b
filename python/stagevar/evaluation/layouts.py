"""Output folders in the layouts the official evaluators read, written atomically so that a run can resume.

Per schedule, under ``<out>/<schedule>/``:

- ``geneval``: ``<index:05d>/metadata.jsonl`` (the prompt's record, one JSON line) and ``samples/<k:04d>.png``
  (djghosh13/geneval's ``evaluation/evaluate_images.py`` reads every numeric folder and every ``\\d+.png`` in
  ``samples/``);
- ``dpg``: ``<id>.png`` per prompt id, one image, or the 2x2 grid of 4 samples in row-major order (TencentQQGYLab/
  ELLA's ``dpg_bench/compute_dpg_bench.py`` crops the grid at multiples of ``--resolution``, and reads every file of
  the folder, so nothing else is written there);
- ``plain``: ``<index:05d>.png`` (one sample) or ``<index:05d>_<k:02d>.png``.

Files appear whole or not at all: each is written to a hidden temporary name in its folder and renamed
(``os.replace`` is atomic on POSIX file systems); a prompt counts as done when all its files exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

KINDS = ("geneval", "dpg", "plain")


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_png(image, path) -> None:
    """Write uint8 ``(H, W, 3)`` (tensor or array) as a PNG at ``path``, atomically."""
    from PIL import Image

    path = Path(path)
    array = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image: expected uint8 (H, W, 3), got {array.dtype} {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_text(text: str, path) -> None:
    """Write ``text`` at ``path``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_png(path) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` of a PNG."""
    from PIL import Image

    with Image.open(path) as img:
        return torch.from_numpy(np.array(img.convert("RGB")))


def folder_name(schedule: str) -> str:
    """The output folder of a schedule name: presets and peers as they are, schedule JSON files by their stem."""
    name = Path(schedule).stem if schedule.endswith(".json") else schedule
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ValueError(f"schedules: {schedule!r} gives no usable folder name")
    return name


class Layout:
    """Where the samples of (prompt, schedule) live, for one layout ``kind`` and ``samples`` images per prompt."""

    def __init__(self, root, kind: str, samples: int):
        if kind not in KINDS:
            raise ValueError(f"layout: expected one of {KINDS}, got {kind!r}")
        if samples < 1:
            raise ValueError(f"samples: must be at least 1, got {samples}")
        if kind == "dpg" and samples not in (1, 4):
            raise ValueError(f"samples: DPG-Bench reads one image or a 2x2 grid of 4 per prompt, got {samples}")
        self.root, self.kind, self.samples = Path(root), kind, samples

    def folder(self, schedule: str) -> Path:
        return self.root / folder_name(schedule)

    def paths(self, record, schedule: str) -> list[Path]:
        """Every file of the prompt's output (the sample images last)."""
        base = self.folder(schedule)
        if self.kind == "geneval":
            d = base / f"{record.index:05d}"
            return [d / "metadata.jsonl"] + [d / "samples" / f"{k:04d}.png" for k in range(self.samples)]
        if self.kind == "dpg":
            return [base / f"{record.key}.png"]
        if self.samples == 1:
            return [base / f"{record.index:05d}.png"]
        return [base / f"{record.index:05d}_{k:02d}.png" for k in range(self.samples)]

    def complete(self, record, schedule: str) -> bool:
        return all(p.is_file() for p in self.paths(record, schedule))

    def write(self, record, schedule: str, images: torch.Tensor) -> None:
        """Write the prompt's samples, uint8 ``(S, H, W, 3)``."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] != self.samples:
            got = f"{images.dtype} {tuple(images.shape)}"
            raise ValueError(f"images: expected uint8 ({self.samples}, H, W, 3), got {got}")
        paths = self.paths(record, schedule)
        if self.kind == "geneval":
            save_text(json.dumps(record.metadata) + "\n", paths[0])
            paths = paths[1:]
        if self.kind == "dpg" and self.samples == 4:
            top, bottom = torch.cat([images[0], images[1]], dim=1), torch.cat([images[2], images[3]], dim=1)
            save_png(torch.cat([top, bottom], dim=0), paths[0])
            return
        for image, path in zip(images, paths):
            save_png(image, path)

    def read(self, record, schedule: str) -> torch.Tensor:
        """The prompt's samples as written, uint8 ``(S, H, W, 3)`` (a DPG grid is cut back into its samples)."""
        paths = self.paths(record, schedule)
        if self.kind == "geneval":
            paths = paths[1:]
        images = [load_png(p) for p in paths]
        if self.kind == "dpg" and self.samples == 4:
            grid = images[0]
            h, w = grid.shape[0] // 2, grid.shape[1] // 2
            images = [grid[:h, :w], grid[:h, w:], grid[h:, :w], grid[h:, w:]]
        return torch.stack(images)
