"""The inference half of VAR's multi-scale quantizer (``models/quant.py::VectorQuantizer2``), official names.

Keys: ``embedding.weight`` (V, Cvae), ``quant_resi.qresi_ls.{k}.weight/bias`` (the K=4 shared phi convs) and the
buffer ``ema_vocab_hit_SV`` (S, V), a training statistic kept only so the checkpoint loads strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def phi_ticks(k: int) -> list[float]:
    """Tick of each shared phi on [0, 1] (upstream: ``linspace(1/3K, 1-1/3K, K)`` when K == 4, else 1/2K)."""
    a = 1 / 3 / k if k == 4 else 1 / 2 / k
    b = 1 - a
    if k == 1:
        return [a]
    step = (b - a) / (k - 1)
    return [a + i * step for i in range(k - 1)] + [b]  # numpy.linspace's arithmetic, last tick exact


def phi_index(si: int, num_scales: int, k: int) -> int:
    """Which phi serves scale ``si``: the tick nearest to ``si / (S - 1)`` (first on ties)."""
    at = si / (num_scales - 1)
    ticks = phi_ticks(k)
    dist = [abs(t - at) for t in ticks]
    return dist.index(min(dist))


class Phi(nn.Conv2d):
    """``phi(h) = (1 - r) h + r conv3x3(h)`` with r = ``resi_ratio`` (0.5)."""

    def __init__(self, c: int, ratio: float = 0.5):
        super().__init__(c, c, kernel_size=3, stride=1, padding=1)
        self.resi_ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mul(1 - self.resi_ratio) + super().forward(h).mul_(self.resi_ratio)


class PhiPartiallyShared(nn.Module):
    def __init__(self, qresi_ls: nn.ModuleList):
        super().__init__()
        self.qresi_ls = qresi_ls

    def __getitem__(self, at: float) -> Phi:
        ticks = phi_ticks(len(self.qresi_ls))
        dist = [abs(t - at) for t in ticks]
        return self.qresi_ls[dist.index(min(dist))]


class VectorQuantizer2(nn.Module):
    """Codebook plus the shared phi convs. Only ``share_quant_resi >= 2`` (partially shared, the released VAE)."""

    def __init__(self, vocab_size: int, cvae: int, patch_nums, quant_resi: float = 0.5, share_quant_resi: int = 4):
        super().__init__()
        if share_quant_resi < 2:
            raise ValueError("VectorQuantizer2: only partially shared phi (share_quant_resi >= 2) is implemented")
        self.vocab_size, self.Cvae = vocab_size, cvae
        self.v_patch_nums = tuple(patch_nums)
        self.quant_resi = PhiPartiallyShared(nn.ModuleList(Phi(cvae, quant_resi) for _ in range(share_quant_resi)))
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.v_patch_nums), vocab_size))
        self.embedding = nn.Embedding(vocab_size, cvae)


def phi_for(quantize: nn.Module, si: int, num_scales: int) -> nn.Module:
    """The phi conv of scale ``si`` on our quantizer or the official one (both index by ``si / (S - 1)``)."""
    return quantize.quant_resi[si / (num_scales - 1)]


def add_scale_codes(quantize: nn.Module, f_hat: torch.Tensor, h: torch.Tensor, si: int, num_scales: int) -> None:
    """``f_hat += phi(up(h))`` in place: ``h`` ``(B, Cvae, pn, pn)`` is bicubic-upsampled to ``f_hat``'s grid
    (except at the last scale, as upstream), then passed through the scale's phi. ``f_hat`` (B, Cvae, H, W)."""
    if si != num_scales - 1:
        h = F.interpolate(h, size=tuple(f_hat.shape[-2:]), mode="bicubic")
    f_hat.add_(phi_for(quantize, si, num_scales)(h))


def next_scale_input(f_hat: torch.Tensor, pn: int) -> torch.Tensor:
    """Area-downsample ``f_hat`` to ``pn x pn`` and flatten: ``(B, pn*pn, Cvae)`` in ``f_hat``'s dtype."""
    nxt = F.interpolate(f_hat, size=(pn, pn), mode="area")
    return nxt.flatten(2).transpose(1, 2)


@torch.no_grad()
def idx_to_var_input(quantize: nn.Module, idx: list[torch.Tensor], patch_nums) -> torch.Tensor:
    """Teacher-forcing input from the tokens of every scale (upstream ``idxBl_to_var_input``).

    ``idx[si]``: int64 ``(B, pn^2)``. Returns float32 ``(B, L - 1, Cvae)``: the inputs of scales 1..S-1.
    """
    S = len(patch_nums)
    B = idx[0].shape[0]
    emb = quantize.embedding.weight
    HW = patch_nums[-1]
    f_hat = emb.new_zeros(B, emb.shape[1], HW, HW, dtype=torch.float32)
    out = []
    for si in range(S - 1):
        pn = patch_nums[si]
        h = quantize.embedding(idx[si]).transpose(1, 2).reshape(B, -1, pn, pn).float()
        add_scale_codes(quantize, f_hat, h, si, S)
        out.append(next_scale_input(f_hat, patch_nums[si + 1]))
    return torch.cat(out, dim=1)
