"""A small learned text encoder over the toy captions: its output takes the place of Infinity's T5 features.

Captions are split on spaces into words of :func:`stagevar.toy.data.words`; word embeddings plus learned positions
go through a few pre-norm transformer layers; each caption's valid tokens become its rows of a
:class:`~stagevar.models.infinity.text.TextFeatures` (``Ct5`` = ``width`` channels).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.infinity.text import TextFeatures
from .data import words

PAD = 0
MAXLEN = 16  # words per caption at most (the longest captions of the grammar have 10)


def vocabulary() -> list[str]:
    """Token 0 is padding, then the caption words in :func:`~stagevar.toy.data.words` order."""
    return ["<pad>", *words()]


def tokenize(captions: list[str], maxlen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> ids int64 ``(B, maxlen)`` (0-padded) and bool mask ``(B, maxlen)`` (True = a word).

    Raises ``ValueError`` naming a word outside the vocabulary or a caption longer than ``maxlen`` words."""
    index = {w: i for i, w in enumerate(vocabulary())}
    ids = torch.zeros(len(captions), maxlen, dtype=torch.long)
    for b, text in enumerate(captions):
        toks = text.lower().split()
        if not toks or len(toks) > maxlen:
            raise ValueError(f"captions: {text!r} has {len(toks)} words (1 to {maxlen} allowed)")
        for t, w in enumerate(toks):
            if w not in index:
                raise ValueError(f"captions: unknown word {w!r} in {text!r} (known: {vocabulary()[1:]})")
            ids[b, t] = index[w]
    return ids, ids != PAD


class TextEncoder(nn.Module):
    """Word + position embeddings and ``layers`` pre-norm transformer layers of ``width`` channels."""

    def __init__(self, width: int = 128, layers: int = 2, heads: int = 2, maxlen: int = MAXLEN):
        super().__init__()
        self.width, self.maxlen = width, maxlen
        self.embed = nn.Embedding(len(vocabulary()), width)
        self.pos = nn.Parameter(torch.randn(maxlen, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> TextFeatures:
        """ids int64 ``(B, L)``, mask bool ``(B, L)`` -> packed :class:`TextFeatures` (fp32 ``(sum lens, width)``)."""
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        x = self.norm(self.layers(x, src_key_padding_mask=~mask))
        return TextFeatures.from_padded(x, mask)

    def encode(self, captions: list[str]) -> TextFeatures:
        """Features of ``captions`` on this module's device."""
        ids, mask = tokenize(captions, self.maxlen)
        device = self.embed.weight.device
        return self(ids.to(device), mask.to(device))
