"""One-call generation: prompts' text features in, RGB images out (plus per-scale bits and logits on request)."""

from __future__ import annotations

import torch

from ..common import plain_images
from .scales import get_scale_schedule
from .session import new_session


@torch.no_grad()
def generate_images(
    model,
    vae,
    text,
    *,
    scale_schedule=None,
    h_div_w: float = 1.0,
    pn: str = "1M",
    negative_text=None,
    seeds=None,
    cfg_list=3.0,
    tau_list=1.0,
    top_k=900,
    top_p=0.97,
    return_records: bool = False,
    **kwargs,
):
    """Generate ``B`` images (B = prompts in ``text``, a :class:`TextFeatures` or the upstream tuple).

    ``scale_schedule`` defaults to the template nearest ``h_div_w`` at size ``pn``. ``seeds``: None, an int
    (upstream's single generator) or one int per image. Returns a dict with ``images`` float RGB ``(B, 3, H, W)`` in
    [0, 1], ``uint8`` RGB ``(B, H, W, 3)`` (rounded, :func:`~stagevar.models.common.to_uint8`) and, with
    ``return_records``, ``bits`` and ``logits`` (lists per scale of ``(B, L, d)`` int64 and ``(B, L, 2d)`` fp32 after
    CFG and tau). Extra kwargs go to :func:`new_session`.
    """
    sched = scale_schedule if scale_schedule is not None else get_scale_schedule(h_div_w, pn)
    s = new_session(
        model,
        vae,
        sched,
        text,
        negative_text=negative_text,
        seeds=seeds,
        cfg_list=cfg_list,
        tau_list=tau_list,
        top_k=top_k,
        top_p=top_p,
        record=return_records,
        **kwargs,
    )
    return plain_images(s, ("bits", "logits") if return_records else ())
