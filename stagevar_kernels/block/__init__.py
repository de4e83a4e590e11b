"""Fused transformer-block ops of Infinity and STAR as PyTorch custom ops (``torch.ops.stagevar.*``).

- :func:`norm_modulate`: LayerNorm in float32 with optional affine and AdaLN scale/shift, cast for the next linear.
- :func:`qk_norm_rope`: cos-attention prologue (q/k l2 norm, per-head scale, RoPE, cast) writing k/v into a cache.
- :func:`residual_gate`: the gated residual adds.
- :func:`bit_pair_probs`: top-k/top-p filtered probabilities of bit logit pairs.

Each op has a pure-torch reference (the CPU kernel, equal bit for bit to the inline block code it replaces) and a
Triton kernel (CUDA, or CPU under ``TRITON_INTERPRET=1``) that matches the reference to the tolerances of
``stagevar_kernels.block.testing.TOLERANCES``, rounding at the same points on the interpreter and on a GPU.
"""

from .ops import BLOCK_BACKENDS, bit_pair_probs, norm_modulate, qk_norm_rope, residual_gate

__all__ = ["BLOCK_BACKENDS", "bit_pair_probs", "norm_modulate", "qk_norm_rope", "residual_gate"]
