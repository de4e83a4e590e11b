"""Token sampling with upstream's draw order (``models/helpers.py::sample_with_top_k_top_p_``)."""

from __future__ import annotations

import torch

from ..sampling import filter_top_k_top_p_


def sample_tokens(
    logits: torch.Tensor, top_k: int, top_p: float, generators: list[torch.Generator | None] | torch.Generator | None
) -> torch.Tensor:
    """Sample one token per position from fp32 ``logits`` ``(B, L, V)`` (edited in place); returns int64 ``(B, L)``.

    ``generators``: one generator (or None) for the whole batch, which makes one ``torch.multinomial`` call over the
    ``(B*L, V)`` probabilities exactly as upstream; or a list of ``B`` generators, one draw call per item.
    """
    B, L, V = logits.shape
    probs = filter_top_k_top_p_(logits, top_k, top_p).softmax(dim=-1)
    if not isinstance(generators, (list, tuple)):
        return torch.multinomial(probs.view(-1, V), 1, replacement=True, generator=generators).view(B, L)
    return torch.cat(
        [torch.multinomial(probs[i], 1, replacement=True, generator=g).view(1, L) for i, g in enumerate(generators)]
    )
