"""Model configurations: Infinity-2B, Infinity-8B (the official shapes) and tiny ones for tests.

The numbers for 2B/8B are those of upstream's loader (``tools/run_infinity.py``, ``load_transformer``): 2B is depth 32,
width 2048, 16 heads, the 32-channel VAE; 8B is depth 40, width 3584, 28 heads, the 14-channel VAE with the 2x2
spatial patchify (56 bits per token). Both run their blocks in 8 chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class VAEConfig:
    """The BSQ VAE decoder (``infinity/models/bsq_vae``): ``codebook_dim`` latent channels, ``patch_size`` upscale."""

    codebook_dim: int = 32
    patch_size: int = 16
    ch_mult: tuple[int, ...] = (1, 2, 4, 4, 4)
    base_ch: int = 128
    num_res_blocks: int = 2


@dataclass(frozen=True)
class InfinityConfig:
    """Transformer hyper-parameters. ``vae`` describes the matching VAE (its ``codebook_dim`` sets ``d_vae``)."""

    name: str
    depth: int
    embed_dim: int
    num_heads: int
    block_chunks: int
    mlp_ratio: float = 4.0
    text_channels: int = 2048
    text_maxlen: int = 512
    norm_eps: float = 1e-6
    apply_spatial_patchify: bool = False
    num_levels: int = 15  # rows of lvl_embed
    vae: VAEConfig = field(default_factory=VAEConfig)

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"head_dim {self.head_dim} must be a multiple of 4 (2D RoPE)")
        if self.depth % self.block_chunks:
            raise ValueError(f"depth {self.depth} not divisible by block_chunks {self.block_chunks}")
        if self.text_channels % self.pool_head_dim or self.embed_dim % self.pool_heads:
            raise ValueError("text_channels must be a multiple of the pool head dim and embed_dim of the pool heads")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def ffn_hidden(self) -> int:
        # upstream: round(embed_dim * mlp_ratio / 256) * 256
        return round(self.embed_dim * self.mlp_ratio / 256) * 256

    @property
    def d_vae(self) -> int:
        """Channels of one token's code vector (``word_embed`` input): 4x the VAE's for the 2x2 patchify."""
        return self.vae.codebook_dim * (4 if self.apply_spatial_patchify else 1)

    @property
    def vocab(self) -> int:
        """Head outputs: two logits per bit."""
        return 2 * self.d_vae

    @property
    def pool_head_dim(self) -> int:
        return 64 if self.embed_dim > 4096 else 128

    @property
    def pool_heads(self) -> int:
        return self.text_channels // self.pool_head_dim

    @property
    def blocks_per_chunk(self) -> int:
        return self.depth // self.block_chunks


VAE_D32 = VAEConfig(codebook_dim=32, patch_size=16, ch_mult=(1, 2, 4, 4, 4))
VAE_D56_PATCHIFY = VAEConfig(codebook_dim=14, patch_size=8, ch_mult=(1, 2, 4, 4))

CONFIGS: dict[str, InfinityConfig] = {
    "infinity_2b": InfinityConfig("infinity_2b", depth=32, embed_dim=2048, num_heads=16, block_chunks=8, vae=VAE_D32),
    "infinity_8b": InfinityConfig(
        "infinity_8b",
        depth=40,
        embed_dim=3584,
        num_heads=28,
        block_chunks=8,
        apply_spatial_patchify=True,
        vae=VAE_D56_PATCHIFY,
    ),
    # Tiny configurations for tests (seconds on a CPU). text_channels 128 -> one pool head of 128.
    "tiny": InfinityConfig(
        "tiny",
        depth=4,
        embed_dim=64,
        num_heads=2,
        block_chunks=2,
        text_channels=128,
        text_maxlen=32,
        vae=VAEConfig(codebook_dim=8, patch_size=4, ch_mult=(1, 1, 2), base_ch=32, num_res_blocks=1),
    ),
    "tiny_8b": InfinityConfig(
        "tiny_8b",
        depth=4,
        embed_dim=64,
        num_heads=2,
        block_chunks=2,
        text_channels=128,
        text_maxlen=32,
        apply_spatial_patchify=True,
        vae=VAEConfig(codebook_dim=4, patch_size=2, ch_mult=(1, 2), base_ch=32, num_res_blocks=1),
    ),
}


def get_config(name: str, **overrides) -> InfinityConfig:
    """The configuration called ``name`` (``infinity_2b``, ``infinity_8b``, ``tiny``, ``tiny_8b``), with overrides."""
    if name not in CONFIGS:
        raise KeyError(f"unknown Infinity config {name!r}; known: {sorted(CONFIGS)}")
    cfg = CONFIGS[name]
    return replace(cfg, **overrides) if overrides else cfg
