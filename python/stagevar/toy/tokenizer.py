"""The toy BSQ tokenizer: a small conv encoder, Infinity's multi-scale bitwise quantisation, our BSQVAE decoder.

Quantisation reuses the generation path's own functions (:mod:`stagevar.models.infinity.bitwise`), so the bits a
training image yields are exactly what a session would have to sample to reproduce it: at scale ``k`` the residual
(latent minus the codes accumulated so far) is area-downsampled to ``(h_k, w_k)``, its signs are the bits, the bits'
codes ``(2b - 1)/sqrt(d)`` are upsampled to the full latent grid and added (``bitwise.accumulate``); the
transformer's input at scale ``k`` is ``bitwise.next_input`` of the codes accumulated before it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models.infinity import bitwise
from ..models.infinity.config import VAEConfig
from ..models.infinity.vae import BSQVAE, Conv, Normalize, ResnetBlock, swish


class Encoder(nn.Module):
    """RGB ``(B, 3, H, W)`` in [-1, 1] -> latent ``(B, codebook_dim, H/patch, W/patch)``: one residual block per
    level of ``channels``, a stride-2 conv between levels (``log2(patch)`` of them)."""

    def __init__(self, codebook_dim: int, patch_size: int, channels: tuple[int, ...]):
        super().__init__()
        downs = int(math.log2(patch_size))
        if 2**downs != patch_size or len(channels) != downs + 1:
            raise ValueError(f"channels: expected log2(patch_size) + 1 = {downs + 1} levels, got {len(channels)}")
        self.conv_in = Conv(3, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(ResnetBlock(channels[i], channels[i]) for i in range(len(channels)))
        self.down = nn.ModuleList(Conv(channels[i], channels[i + 1], 4, padding=1) for i in range(downs))
        for d in self.down:
            d.conv.stride = (2, 2)
        self.norm_out = Normalize(channels[-1])
        self.conv_out = Conv(channels[-1], codebook_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i < len(self.down):
                h = self.down[i](h)
        return self.conv_out(swish(self.norm_out(h)))


def quantize(z: torch.Tensor, scales: list[tuple[int, int]]):
    """Multi-scale bitwise quantisation of ``z`` fp32 ``(B, d, H, W)`` (``(H, W)`` = the last scale).

    Returns ``summed`` fp32 ``(B, d, 1, H, W)`` (the codes of all scales, as a session accumulates them),
    ``bits`` a list of int64 ``(B, h*w, d)`` (the labels of each scale) and ``x_wo_prefix`` fp32 ``(B, L - 1, d)``
    (the transformer's code inputs of scales 1.., as a session computes them)."""
    B, d, H, W = z.shape
    if tuple(scales[-1]) != (H, W):
        raise ValueError(f"scales: the last scale {scales[-1]} must be the latent grid {(H, W)}")
    z = z.detach().float()
    residual, summed = z, None
    bits_all, inputs = [], []
    for si, (h, w) in enumerate(scales):
        if si > 0:
            inputs.append(bitwise.next_input(summed, (h, w), False))
        r = F.interpolate(residual, size=(h, w), mode="area")
        bits = (r > 0).long().permute(0, 2, 3, 1).reshape(B, h * w, d)
        up = bitwise.accumulate(None, bitwise.bits_to_codes(bits, h, w, d, False), (H, W), si == len(scales) - 1)
        summed = up if summed is None else summed + up
        residual = residual - up.squeeze(2)
        bits_all.append(bits)
    return summed, bits_all, torch.cat(inputs, dim=1)


class Tokenizer(nn.Module):
    """``encoder`` (:class:`Encoder`) and ``vae`` (our decoder-only :class:`BSQVAE`, keys ``decoder.*``)."""

    def __init__(self, vae: VAEConfig, encoder_channels: tuple[int, ...]):
        super().__init__()
        self.encoder = Encoder(vae.codebook_dim, vae.patch_size, encoder_channels)
        self.vae = BSQVAE(vae)

    def state_for_saving(self) -> dict[str, torch.Tensor]:
        """``encoder.*`` and the decoder's ``decoder.*`` keys: the layout our VAE loader reads (it ignores the
        encoder keys as it does for official checkpoints)."""
        sd = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        return sd | dict(self.vae.state_dict())

    def load_saved(self, sd: dict[str, torch.Tensor]) -> None:
        self.encoder.load_state_dict({k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")})
        self.vae.load_state_dict({k: v for k, v in sd.items() if k.startswith("decoder.")})

    def reconstruct(self, images: torch.Tensor, scales: list[tuple[int, int]]):
        """Training forward: images fp32 ``(B, 3, H, W)`` in [0, 1] -> (reconstruction in [-1, 1] unclamped,
        latent ``z``, quantised ``summed`` ``(B, d, H/p, W/p)``), with a straight-through gradient to ``z``."""
        z = self.encoder(images * 2 - 1)
        summed = quantize(z, scales)[0].squeeze(2)
        zq = z + (summed - z).detach()
        return self.vae.decoder(zq), z, summed
