"""One-call generation: text rows in, RGB images out (plus per-scale tokens and logits on request)."""

from __future__ import annotations

import torch
from torch import nn

from ..common import plain_images
from .session import new_session


@torch.no_grad()
def generate_images(model: nn.Module, vae: nn.Module | None, text, *, return_records: bool = False, **kwargs) -> dict:
    """Generate ``B`` images with the plain loop (``text`` and ``kwargs``, ``batch`` among them, as
    :func:`~stagevar.models.star.session.new_session`).

    Returns a dict with ``images`` float32 RGB ``(B, 3, H, W)`` in [0, 1], ``uint8`` RGB ``(B, H, W, 3)`` (rounded)
    and, with ``return_records``, ``tokens`` and ``logits`` (lists per scale of int64 ``(B, pn^2)`` and float32
    ``(B, pn^2, V)`` after the guidance mix, before top-k/top-p).
    """
    session = new_session(model, vae, text, record=return_records, **kwargs)
    return plain_images(session, ("tokens", "logits") if return_records else ())
