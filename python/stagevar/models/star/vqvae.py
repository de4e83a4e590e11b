"""VAR's VQ-VAE (``models/vqvae.py`` + ``models/basic_vae.py``) with the official module names.

The whole ``vae_ch160v4096z32`` state dict loads with ``strict=True`` (encoder included, though only the decoder
runs here). ``fhat_to_img`` is the decode path: ``post_quant_conv`` -> ``decoder`` -> clamp to [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VQVAEConfig
from .quant import VectorQuantizer2


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _gn(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = _gn(cout)
        self.dropout = nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over the H*W positions (scale C^-1/2).

    Computed as the official VQ-VAE computes it: two ``bmm`` and a softmax in the input dtype, scores scaled after
    the first product. SDPA gives the same math in another summation order (images differ by ~1.5e-5 in fp32);
    this order reproduces the official decoder bit for bit.
    """

    def __init__(self, c: int):
        super().__init__()
        self.norm = _gn(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q_BCL, k_BCL, v_BCL = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        scores_BLL = torch.bmm(q_BCL.transpose(1, 2).contiguous(), k_BCL.contiguous()).mul_(C**-0.5)  # [b, query, key]
        attn_BLL = scores_BLL.softmax(dim=2)
        h_BCL = torch.bmm(v_BCL.contiguous(), attn_BLL.transpose(1, 2).contiguous())  # sum over keys
        return x + self.proj_out(h_BCL.reshape(B, C, H, W))


class Upsample2x(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample2x(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def _level() -> nn.Module:
    m = nn.Module()
    m.block, m.attn = nn.ModuleList(), nn.ModuleList()
    return m


def _mid(c: int) -> nn.Module:
    m = nn.Module()
    m.block_1, m.attn_1, m.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)
    return m


class Encoder(nn.Module):
    """Present for strict loading (and completeness); the generation path never runs it."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        ch, mult, n = cfg.ch, cfg.ch_mult, cfg.num_res_blocks
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, 1, 1)
        in_mult = (1,) + tuple(mult)
        self.down = nn.ModuleList()
        for i, m in enumerate(mult):
            lvl, cin, cout = _level(), ch * in_mult[i], ch * m
            for _ in range(n):
                lvl.block.append(ResnetBlock(cin, cout))
                cin = cout
                if i == len(mult) - 1:
                    lvl.attn.append(AttnBlock(cin))
            if i != len(mult) - 1:
                lvl.downsample = Downsample2x(cin)
            self.down.append(lvl)
        self.mid = _mid(cin)
        self.norm_out = _gn(cin)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, lvl in enumerate(self.down):
            for j, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if i != len(self.down) - 1:
                h = lvl.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        ch, mult, n = cfg.ch, cfg.ch_mult, cfg.num_res_blocks
        cin = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, 1, 1)
        self.mid = _mid(cin)
        up = []
        for i in reversed(range(len(mult))):
            lvl, cout = _level(), ch * mult[i]
            for _ in range(n + 1):
                lvl.block.append(ResnetBlock(cin, cout))
                cin = cout
                if i == len(mult) - 1:
                    lvl.attn.append(AttnBlock(cin))
            if i != 0:
                lvl.upsample = Upsample2x(cin)
            up.insert(0, lvl)
        self.up = nn.ModuleList(up)
        self.norm_out = _gn(cin)
        self.conv_out = nn.Conv2d(cin, cfg.in_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for j, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if i != 0:
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQVAE(nn.Module):
    """Multi-scale VQ-VAE. ``fhat_to_img(f_hat (B, Cvae, h, w)) -> (B, 3, 16h, 16w)`` in [-1, 1]."""

    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        cfg = config or VQVAEConfig()
        self.config = cfg
        self.V, self.Cvae, self.vocab_size = cfg.vocab_size, cfg.z_channels, cfg.vocab_size
        self.downsample = cfg.downsample
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer2(
            cfg.vocab_size, cfg.z_channels, cfg.patch_nums, cfg.quant_resi, cfg.share_quant_resi
        )
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, 1, 1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, 1, 1)
        self.eval().requires_grad_(False)

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Decode accumulated codes ``(B, Cvae, h, w)`` to images ``(B, 3, H, W)`` clamped to [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp_(-1, 1)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As upstream: an ``ema_vocab_hit_SV`` with another number of scales (e.g. 10 vs 14) is replaced by ours."""
        key = "quantize.ema_vocab_hit_SV"
        if key in state_dict and state_dict[key].shape[0] != self.quantize.ema_vocab_hit_SV.shape[0]:
            state_dict = dict(state_dict)
            own = self.quantize.ema_vocab_hit_SV
            state_dict[key] = torch.zeros(own.shape, dtype=own.dtype)  # training statistic, unused at inference
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
