"""The top-k / top-p filter of upstream's samplers (Infinity ``sample_with_top_k_top_p_also_inplace_modifying_logits_``
and STAR ``sample_with_top_k_top_p_``, the same operation on the last dimension), shared by both families."""

from __future__ import annotations

import torch


def filter_top_k_top_p_(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """In place on ``logits`` ``(..., V)``: set to -inf what lies outside the ``top_k`` largest (ties at the threshold
    kept; ``top_k <= 0``: no limit), then the low tail whose probability mass is ``<= 1 - top_p`` (the most likely
    entry always kept; ``top_p <= 0``: no limit). Returns ``logits``.

    The same operations in the same order as upstream, so the filtered logits (and the draws from their softmax) are
    upstream's bit for bit.
    """
    V = logits.shape[-1]
    if top_k > 0:
        kth = logits.topk(min(top_k, V), dim=-1, largest=True, sorted=False)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < kth, -torch.inf)
    if top_p > 0:
        sorted_logits, order = logits.sort(dim=-1, descending=False)
        drop = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        drop[..., -1:] = False
        logits.masked_fill_(drop.scatter(order.ndim - 1, order, drop), -torch.inf)
    return logits
