"""Host-side helpers of every Triton kernel module (the two ops' kernels and the block kernels)."""

from __future__ import annotations

from ..backends import triton_interpreting

# Decided once at import, like Triton itself: the interpreter mode is fixed when ``@triton.jit`` runs.
INTERPRETING = triton_interpreting()


def next_pow2(n: int) -> int:
    """The smallest power of two ``>= n`` (1 for ``n <= 1``): block sizes of the launch configurations."""
    return 1 << max(0, n - 1).bit_length()
