"""Bit labels: top-k/top-p sampling of logit pairs, bits -> codes, code accumulation, next-scale input.

Sampling follows upstream ``sample_with_top_k_top_p_also_inplace_modifying_logits_`` with V = 2 per bit and
``num_samples=1``: the logits ``(B, L, 2d)`` are viewed ``(B, L*d, 2)``; one ``torch.multinomial`` over all rows per
scale. Random streams (``generators``):

- one generator (or ``None``: torch's default one): a single multinomial over the ``(B*L*d, 2)`` matrix, exactly
  upstream's draw sequence for any B;
- a list of B generators: one multinomial per item over its ``(L*d, 2)`` rows. Item b then equals a B=1 run (and
  upstream's B=1 run) seeded with generator b's seed; for B>1 the draws differ from upstream's single-generator run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import stagevar_kernels.block as block_ops

from ..sampling import filter_top_k_top_p_


def sample_bits(logits_BLV: torch.Tensor, top_k: int, top_p: float, generators) -> torch.Tensor:
    """Sample one bit per logit pair. ``logits_BLV`` fp32 ``(B, L, 2d)`` (not modified);
    ``generators``: None, one ``torch.Generator``, or a list of B of them (see the module docstring).
    Returns int64 bits ``(B, L, d)``.

    The filtered pair probabilities come from one fused op (``bit_pair_probs``: upstream's filter then softmax, the
    same bits as :func:`~stagevar.models.sampling.filter_top_k_top_p_` + ``softmax``); ``torch.multinomial`` draws
    upstream's random stream."""
    B, L, V2 = logits_BLV.shape
    probs = block_ops.bit_pair_probs(logits_BLV, top_k=top_k, top_p=top_p)  # (B*L*d, 2)
    if isinstance(generators, (list, tuple)):
        if len(generators) != B:
            raise ValueError(f"generators: expected {B}, got {len(generators)}")
        probs = probs.view(B, -1, 2)
        bits = torch.stack([torch.multinomial(probs[b], 1, generator=g)[:, 0] for b, g in enumerate(generators)])
    else:
        bits = torch.multinomial(probs, 1, generator=generators).view(B, -1)
    return bits.view(B, L, V2 // 2)


def sample_bits_upstream(logits_BLV: torch.Tensor, top_k: int, top_p: float, generators) -> torch.Tensor:
    """:func:`sample_bits` in upstream's data flow (:func:`~stagevar.models.sampling.filter_top_k_top_p_` in place,
    then ``softmax``):
    the same bits, more launches. ``logits_BLV`` is modified in place."""
    B, L, V2 = logits_BLV.shape
    pairs = logits_BLV.reshape(B, -1, 2)
    probs = filter_top_k_top_p_(pairs, top_k, top_p).softmax(dim=-1)
    if isinstance(generators, (list, tuple)):
        if len(generators) != B:
            raise ValueError(f"generators: expected {B}, got {len(generators)}")
        bits = torch.stack([torch.multinomial(probs[b], 1, generator=g)[:, 0] for b, g in enumerate(generators)])
    else:
        bits = torch.multinomial(probs.view(-1, 2), 1, generator=generators).view(B, -1)
    return bits.view(B, L, V2 // 2)


def bits_to_codes(bits_BLd: torch.Tensor, h: int, w: int, codebook_dim: int, patchify: bool) -> torch.Tensor:
    """Bits ``(B, h*w, d)`` -> codes fp32 ``(B, dv, 1, H, W)``: bit b -> (2b - 1)/sqrt(dv), then an l2 norm over the
    channel (a no-op up to rounding, kept as upstream). With the 2x2 patchify (8B) ``d = 4 dv``, ``(H, W) = (2h, 2w)``
    via ``pixel_shuffle``."""
    B = bits_BLd.shape[0]
    idx = bits_BLd.reshape(B, h, w, -1)
    if patchify:
        idx = F.pixel_shuffle(idx.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    scale = 1 / math.sqrt(codebook_dim)
    codes = idx.float() * scale * 2 - scale
    codes = F.normalize(codes, dim=-1)
    return codes.permute(0, 3, 1, 2).unsqueeze(2)  # (B, dv, 1, H, W)


def accumulate(summed: torch.Tensor | None, codes: torch.Tensor, final_hw: tuple[int, int], last: bool) -> torch.Tensor:
    """``summed + up(codes)`` at full latent resolution (trilinear, T = 1, as upstream); the last scale adds as is."""
    if not last:
        codes = F.interpolate(codes, size=(1, *final_hw), mode="trilinear")
    return codes if summed is None else summed + codes


def next_input(summed: torch.Tensor, hw: tuple[int, int], patchify: bool) -> torch.Tensor:
    """Input codes of a scale whose VAE grid is ``hw``: trilinear down of ``summed`` ``(B, dv, 1, H, W)``;
    with the patchify, ``pixel_unshuffle(2)``. Returns ``(B, h*w, d)`` fp32 (before ``word_embed``)."""
    x = F.interpolate(summed, size=(1, *hw), mode="trilinear").squeeze(-3)
    if patchify:
        x = F.pixel_unshuffle(x, 2)
    return x.reshape(*x.shape[:2], -1).permute(0, 2, 1)
