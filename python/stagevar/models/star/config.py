"""Configurations of the STAR transformer and of its VQ-VAE (shapes only, no weights), and the geometry read back
from a built model (ours or an object of the official ``VAR`` class)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn

PATCH_NUMS_1024 = (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)

# Key prefixes of the sampler-only checkpoint (``enable_adaptive_norm=True``), which the loader refuses.
SAMPLER_KEY_PREFIXES = (
    "word_embed_head.",
    "feat_extract_blocks.",
    "pos_start_last",
    "head_logits2.",
    "encoder_proj2.",
    "head_proj.",
    "lvl_embed_2.",
)


@dataclass(frozen=True)
class STARConfig:
    """Shape of a STAR transformer (``models/var_drop.py::VAR`` with ``enable_adaptive_norm=False``).

    The official builder ties ``heads = depth`` and ``width = 64 * depth``; tiny test configs may break that tie.
    ``rope_theta``/``rope_norm`` are the values of ``sample.py`` (10000, 64).
    """

    depth: int = 30
    width: int = 1920
    heads: int = 30
    mlp_ratio: float = 4.0
    in_dim_cross: int = 1024
    vocab_size: int = 4096
    cvae: int = 32
    num_classes: int = 1000
    patch_nums: tuple[int, ...] = PATCH_NUMS_1024
    rope_theta: float = 10000.0
    rope_norm: float = 64.0
    norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"STARConfig: width {self.width} is not a multiple of heads {self.heads}")
        if self.head_dim % 4:
            raise ValueError(f"STARConfig: head_dim {self.head_dim} must be a multiple of 4 (axial RoPE)")


@dataclass(frozen=True)
class VQVAEConfig:
    """Shape of VAR's multi-scale VQ-VAE (``vae_ch160v4096z32``). GroupNorm(32) needs ``ch * m % 32 == 0``."""

    vocab_size: int = 4096
    z_channels: int = 32
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    share_quant_resi: int = 4
    quant_resi: float = 0.5
    patch_nums: tuple[int, ...] = PATCH_NUMS_1024
    in_channels: int = 3

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _d(depth: int, patch_nums) -> STARConfig:
    return STARConfig(depth=depth, width=64 * depth, heads=depth, patch_nums=tuple(patch_nums))


@dataclass(frozen=True)
class ModelConfig:
    """One named model: the transformer's configuration ``star`` and its VQ-VAE's ``vae``."""

    star: STARConfig
    vae: VQVAEConfig = field(default_factory=VQVAEConfig)


def _model(star: STARConfig, **vae) -> ModelConfig:
    return ModelConfig(star, VQVAEConfig(patch_nums=star.patch_nums, **vae))


CONFIGS: dict[str, ModelConfig] = {
    "star-d30-1024": _model(_d(30, PATCH_NUMS_1024)),
    "star-d30-512": _model(_d(30, PATCH_NUMS_512)),
    "star-d30-256": _model(_d(30, PATCH_NUMS_256)),
    "star-d16-256": _model(_d(16, PATCH_NUMS_256)),
    # Test-sized: seconds on a CPU. ch=32 keeps GroupNorm(32) valid; 4 levels -> 8x downsampling.
    "tiny": _model(
        STARConfig(depth=2, width=128, heads=4, in_dim_cross=64, vocab_size=64, cvae=8, patch_nums=(1, 2, 3, 4)),
        vocab_size=64,
        z_channels=8,
        ch=32,
        ch_mult=(1, 1, 2),
        num_res_blocks=1,
    ),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """The configuration called ``name`` (``star-d30-1024``, ``star-d30-512``, ``star-d30-256``, ``star-d16-256``,
    ``tiny``); ``overrides`` replace fields of the transformer config (``patch_nums`` also reaches the VAE)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown STAR config {name!r}; known: {sorted(CONFIGS)}")
    cfg = CONFIGS[name]
    if not overrides:
        return cfg
    star = replace(cfg.star, **overrides)
    return ModelConfig(star, replace(cfg.vae, patch_nums=star.patch_nums))


def model_geometry(model: nn.Module) -> dict:
    """Width, heads, head_dim, patch_nums and RoPE parameters of our STAR or of an official ``VAR`` object."""
    C = model.word_embed.out_features
    H = model.blocks[0].attn.scale_mul_1H11.shape[1]
    theta = getattr(model, "rope_theta", None)
    norm = getattr(model, "rope_norm", None)
    cis = getattr(model, "compute_cis", None)  # upstream: functools.partial(compute_axial_cis, theta=, normalize=)
    if cis is not None and hasattr(cis, "keywords"):
        theta = cis.keywords.get("theta", theta)
        norm = cis.keywords.get("normalize", norm)
    if theta is None or norm is None:
        raise ValueError("STAR: cannot find the RoPE parameters (rope_theta/rope_norm or compute_cis) on the model")
    return dict(width=C, heads=H, head_dim=C // H, patch_nums=tuple(model.patch_nums), theta=theta, norm=norm)
