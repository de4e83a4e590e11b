"""The self-attention KV cache of one generation, preallocated for the whole scale schedule and written in place.

One buffer per K and V holds every block: ``(blocks, R, H, T, c)``, ``R`` the rows of the active guidance, ``T``
the tokens of all scales (an upper bound: a reduced step appends ``r <= h*w`` rows). Block ``b`` has ``filled[b]``
keys; a call reserves the next ``L`` positions and receives views to write its keys into and to attend over, so
the cache never grows by ``cat`` (a ``cat`` per block and step copied the whole cache: about 30 GB of traffic per
vanilla Infinity-2B generation at 1024px). Dropping a guidance branch keeps the rows as views (no copy).
"""

from __future__ import annotations

import torch


class StaticKV:
    """Per-block K/V buffers of one generation, allocated at the first write (its dtype is the attention's).

    Args:
        blocks: number of blocks (callers index them ``0..blocks-1``).
        rows: rows of the active guidance ``R``.
        heads, head_dim: ``H`` and ``c``.
        capacity: tokens per row ``T`` (the sum of ``h*w`` over the scales).
        device: where the buffers live.
    """

    def __init__(self, blocks: int, rows: int, heads: int, capacity: int, head_dim: int, device):
        self.shape = (int(blocks), int(rows), int(heads), int(capacity), int(head_dim))
        self.device = torch.device(device)
        self.k: torch.Tensor | None = None  # (blocks, R, H, T, c)
        self.v: torch.Tensor | None = None
        self.filled = [0] * self.shape[0]
        self.released = False

    @property
    def capacity(self) -> int:
        return self.shape[3]

    def set_capacity(self, capacity: int) -> None:
        """Hold ``capacity`` tokens per row (e.g. only the scales a schedule computes). Before the first write only:
        the buffers are allocated then."""
        if self.k is not None:
            raise RuntimeError("StaticKV: the capacity is fixed once the buffers exist (set it before the first step)")
        if int(capacity) < 1:
            raise ValueError(f"capacity: expected a positive token count, got {capacity}")
        self.shape = (*self.shape[:3], int(capacity), self.shape[4])

    def _allocate(self, dtype: torch.dtype) -> None:
        if self.released:
            raise RuntimeError("StaticKV: the cache was released (after decoding); start a new session")
        self.k = torch.empty(self.shape, dtype=dtype, device=self.device)
        self.v = torch.empty(self.shape, dtype=dtype, device=self.device)

    def reserve(self, block: int, length: int, dtype: torch.dtype):
        """The next ``length`` key positions of ``block``.

        Returns ``(k_new, v_new, k_all, v_all)``: views ``(R, H, length, c)`` to write this call's keys/values into
        and ``(R, H, filled + length, c)`` over every key of the block so far (the new ones included).
        """
        if self.k is None:
            self._allocate(dtype)
        elif self.k.dtype != dtype:
            raise RuntimeError(f"StaticKV: keys in {dtype} but the cache holds {self.k.dtype}")
        n = self.filled[block]
        end = n + int(length)
        if end > self.shape[3]:
            raise RuntimeError(f"StaticKV: block {block} would hold {end} keys; capacity {self.shape[3]}")
        self.filled[block] = end
        k, v = self.k[block], self.v[block]
        return k[:, :, n:end], v[:, :, n:end], k[:, :, :end], v[:, :, :end]

    def append(self, block: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k``, ``v`` ``(R, H, L, c)`` after the block's keys; returns every key/value of the block (views)."""
        k_new, v_new, k_all, v_all = self.reserve(block, k.shape[2], k.dtype)
        k_new.copy_(k)
        v_new.copy_(v)
        return k_all, v_all

    def view(self, block: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The keys/values of ``block`` written so far ``(R, H, filled, c)`` (views), or None before any."""
        if self.k is None or self.filled[block] == 0:
            return None
        n = self.filled[block]
        return self.k[block][:, :, :n], self.v[block][:, :, :n]

    def mark(self) -> list[int]:
        """The fill counts now (see :meth:`rewind`)."""
        return list(self.filled)

    def rewind(self, mark: list[int]) -> None:
        """Forget the keys written after :meth:`mark` (they are overwritten by the next writes)."""
        if len(mark) != len(self.filled) or any(m > f for m, f in zip(mark, self.filled)):
            raise ValueError("mark: not a mark of this cache's past")
        self.filled = list(mark)

    def keep_rows(self, rows: slice) -> None:
        """Keep only ``rows`` of every block (views of the same storage; no copy)."""
        if self.k is not None:
            self.k, self.v = self.k[:, rows], self.v[:, rows]
        start, stop, _ = rows.indices(self.shape[1])
        self.shape = (self.shape[0], stop - start, *self.shape[2:])

    def release(self) -> None:
        """Free the buffers (before the VAE decode)."""
        self.k = self.v = None
        self.released = True
