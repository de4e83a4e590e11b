"""BSQ VAE decoder of Infinity, state-dict compatible with the official VAE checkpoints (decoder part).

Key names follow ``infinity/models/bsq_vae/flux_vqgan.py`` with ``cnn_type='2d'``, no attention:
``decoder.conv_in.conv.*``, ``decoder.mid.block_{1,2}.{norm1.norm, conv1.conv, norm2.norm, conv2.conv}.*``,
``decoder.up.{i}.block.{j}.*`` (+ ``nin_shortcut.conv.*`` if channels change), ``decoder.up.{i}.upsample.conv.conv.*``,
``decoder.norm_out.norm.*``, ``decoder.conv_out.conv.*``. Only the decoder is built: the encoder and quantizer keys of
a checkpoint are reported as ignored by the loader.

``decode(z)``: ``z`` fp32 ``(B, codebook_dim, h, w)`` latent -> image ``(B, 3, patch*h, patch*w)`` in [-1, 1] (clamped).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import VAEConfig


class Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding)

    def forward(self, x):
        return self.conv(x)


class Normalize(nn.Module):
    def __init__(self, C: int):
        super().__init__()
        if C % 32 == 0:
            groups = 32
        elif C % 24 == 0:
            groups = 24
        else:
            raise ValueError(f"GroupNorm channels {C} must be a multiple of 32 or 24")
        self.norm = nn.GroupNorm(groups, C, eps=1e-6, affine=True)

    def forward(self, x):
        return self.norm(x)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = Normalize(cin)
        self.conv1 = Conv(cin, cout, 3, padding=1)
        self.norm2 = Normalize(cout)
        self.conv2 = Conv(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = Conv(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class Upsample(nn.Module):
    def __init__(self, C: int):
        super().__init__()
        self.conv = Conv(C, C, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, mult = cfg.base_ch, cfg.ch_mult
        n = len(mult)
        max_up = math.log2(cfg.patch_size)
        if not (max_up.is_integer() and max_up <= n - 1):
            raise ValueError(f"patch_size {cfg.patch_size} needs log2(patch) <= len(ch_mult) - 1")
        block_in = ch * mult[-1]
        self.conv_in = Conv(cfg.codebook_dim, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        ups = []
        for i_level in reversed(range(n)):
            up = nn.Module()
            blocks = []
            block_out = ch * mult[i_level]
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
            up.block = nn.ModuleList(blocks)
            if 1 <= i_level <= max_up:
                up.upsample = Upsample(block_in)
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)
        self.norm_out = Normalize(block_in)
        self.conv_out = Conv(block_in, 3, 3, padding=1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.block_1(self.conv_in(z)))
        for i_level in reversed(range(len(self.up))):
            up = self.up[i_level]
            for blk in up.block:
                h = blk(h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class BSQVAE(nn.Module):
    """Decoder-only BSQ VAE. ``embed_dim`` = ``codebook_dim`` (as the official ``AutoEncoder``)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.codebook_dim = self.embed_dim = cfg.codebook_dim
        self.patch_size = cfg.patch_size
        self.decoder = Decoder(cfg)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(B, d, h, w)`` (or ``(B, d, 1, h, w)``) -> ``(B, 3, patch*h, patch*w)`` clamped to [-1, 1]."""
        if z.ndim == 5:
            z = z.squeeze(2)
        return self.decoder(z).clamp(-1, 1)
