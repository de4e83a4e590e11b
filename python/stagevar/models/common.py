"""What every model family's generation shares: the plain loop, the random generators, the autocast context and the
float-to-uint8 image conversion."""

from __future__ import annotations

import contextlib
import numbers

import torch

from .session import GenerationSession


def run_plain(session: GenerationSession, *, decode: bool = True, call_seed: int | None = None) -> torch.Tensor | None:
    """The plain loop (no acceleration): every scale, every block in order, then ``session.decode()``.

    Returns float RGB ``(B, 3, H, W)`` in [0, 1], or None with ``decode=False`` (the session keeps its codes and
    records). ``call_seed`` is part of the runner signature of the official entry points (the StageVAR loop seeds
    its own draws with it); the plain loop draws only through the session's generators and ignores it.
    """
    for si in range(len(session.scales)):
        x = session.scale_input(si)  # (R, h*w, C)
        for unit in session.units("block"):
            for block in unit:
                x = session.run_block(block, x, si)
        session.finish_scale(si, x)
    return session.decode() if decode else None


def make_generators(seeds, batch: int, device) -> torch.Generator | list[torch.Generator] | None:
    """The random generators of one generation.

    ``seeds``: None -> None (torch's default generator); an int -> one generator (upstream's single draw sequence
    for the whole batch); a sequence of ``batch`` ints -> one generator per image (image b then equals a batch-1
    generation seeded ``seeds[b]``).
    """
    if seeds is None:
        return None
    if isinstance(seeds, numbers.Integral):
        return torch.Generator(device=device).manual_seed(int(seeds))
    seeds = list(seeds)
    if len(seeds) != batch:
        raise ValueError(f"seeds: expected {batch} per-image seeds, got {len(seeds)}")
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device``'s type in ``dtype``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float RGB ``(..., 3, H, W)`` in [0, 1] -> uint8 RGB ``(..., H, W, 3)``, rounded to the nearest level.

    Rounding, not truncation: truncation maps 0.999 to 254 and darkens every pixel by half a level on average.
    (The official entry points return upstream's truncated bytes themselves, see ``infinity.official``.)
    """
    return images.movedim(-3, -1).mul(255).round_().clamp_(0, 255).to(torch.uint8)


def plain_images(session: GenerationSession, records: tuple[str, ...] = ()) -> dict:
    """The plain loop on ``session``, then its images as both families' ``generate_images`` return them:
    ``images`` float RGB ``(B, 3, H, W)`` in [0, 1], ``uint8`` RGB ``(B, H, W, 3)`` (rounded) and, for each name in
    ``records``, that entry of every per-scale record (``session.records``, kept with ``record=True``)."""
    images = run_plain(session)
    out = {"images": images, "uint8": to_uint8(images)}
    for name in records:
        out[name] = [r[name] for r in session.records]
    return out
