"""What the StageVAR loop needs from a model: one generation in flight, driven scale by scale.

A model (Infinity, STAR, or an object of an official class wrapped by ``accelerate``) hands out a
:class:`GenerationSession` per generation. The session owns every piece of per-generation state: the
self-attention KV cache of every block, the text/conditioning rows, the accumulated codes, the random generator.
Nothing is stored on the model's modules, so two generations never see each other's state.

Rows. While ``guidance == "cfg"`` the residual stream has ``2B`` rows: the ``B`` prompt rows first, then the
``B`` null-prompt rows (the official layout of both Infinity and STAR). ``set_guidance("null")`` keeps only the
null rows, ``set_guidance("cond")`` only the prompt rows; either slices the KV cache and the text rows once.

The plain loop (:func:`stagevar.models.common.run_plain`), which the StageVAR loop generalises
(``stagevar.generate``)::

    session = model.new_session(...)
    for si in range(len(session.scales)):
        x = session.scale_input(si)
        for unit in session.units("block"):  # one block per unit (Infinity also has "chunk" units)
            for block in unit:
                x = session.run_block(block, x, si)
        session.finish_scale(si, x)
    images = session.decode()
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

GUIDANCES = ("cfg", "cond", "null")
UNIT_KINDS = ("chunk", "block")


def rows_for(guidance_from: str, guidance_to: str, batch: int) -> slice:
    """The row slice that turns the rows of ``guidance_from`` into those of ``guidance_to``.

    Only ``cfg -> cond`` (first ``batch`` rows), ``cfg -> null`` (last ``batch`` rows) and no change are allowed.
    """
    if guidance_from == guidance_to:
        return slice(None)
    if guidance_from != "cfg":
        raise ValueError(f"guidance: cannot switch from {guidance_from!r} to {guidance_to!r}; rows already dropped")
    if guidance_to == "cond":
        return slice(0, batch)
    if guidance_to == "null":
        return slice(batch, 2 * batch)
    raise ValueError(f"guidance: expected one of {GUIDANCES}, got {guidance_to!r}")


@runtime_checkable
class GenerationSession(Protocol):
    """One generation of ``batch`` images, stepped scale by scale.

    Attributes:
        scales: the ``(h, w)`` token grid of every scale step, coarse to fine.
        batch: number of images ``B``.
        guidance: the rows currently computed: ``"cfg"`` (2B rows), ``"cond"`` or ``"null"`` (B rows).
        width: the residual-stream width ``C``.
    """

    scales: list[tuple[int, int]]
    batch: int
    guidance: str
    width: int

    def units(self, kind: str) -> list[list[nn.Module]]:
        """The acceleration units: ``"chunk"`` (Infinity's block chunks) or ``"block"`` (one block each), in order."""
        ...

    def scale_input(self, si: int) -> torch.Tensor:
        """The residual stream entering the first block at scale ``si``: ``(R, h*w, C)``, R = rows of the guidance.

        Includes everything the model adds before block 0 (level embedding, start token at si = 0).
        """
        ...

    def run_block(
        self, block: nn.Module, x: torch.Tensor, si: int, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One block at scale ``si`` on ``x`` ``(R, L, C)``; returns ``(R, L, C)``.

        ``positions``: int64 ``(R, L)`` flat indices into the scale's ``h*w`` grid giving each row's RoPE position;
        ``None`` means the full scale in raster order (``L == h*w``). The rows' K/V are appended to the session's
        cache for this block, so later scales attend to them.
        """
        ...

    def set_guidance(self, guidance: str) -> None:
        """Keep only the rows of ``guidance`` from now on (slices KV caches, text and conditioning rows once)."""
        ...

    def finish_scale(self, si: int, x: torch.Tensor) -> None:
        """Head, guidance mix, sampling (one random draw sequence per scale) and code accumulation for scale ``si``.

        ``x`` is the last block's output ``(R, h*w, C)``. Prepares the input of the next scale.
        """
        ...

    def decode(self) -> torch.Tensor:
        """Decode the accumulated codes: float RGB images ``(B, 3, H, W)`` in ``[0, 1]``."""
        ...


@runtime_checkable
class Graphable(Protocol):
    """Optional: a :class:`GenerationSession` whose computed steps ``stagevar.engine.graphs`` can capture in CUDA
    graphs (``cuda_graphs=True``). Besides the protocol it has ``model`` (the key of the graph cache), ``device``
    and ``kv`` (a :class:`stagevar.engine.StaticKV`, whose fill counts the engine marks and rewinds around the
    warm-up), and the methods below. Its guidance switch must only make views of its set-up tensors."""

    def plan_scales(self, n: int) -> None:
        """Size the KV cache for the first ``n`` scales (the ones a schedule computes), before the first step."""
        ...

    def graph_inputs(self) -> list[torch.Tensor]:
        """Every set-up tensor the computed steps read that differs between generations (text K/V, prompt-dependent
        constants...), in a fixed order, with the set-up rows (called before any ``set_guidance``). A later
        generation copies its own into the capturing session's, one ``copy_`` each."""
        ...

    def graph_signature(self) -> tuple:
        """The hashable configuration the steps bake in (amp dtype...); ``ValueError`` starting ``cuda_graphs:`` for a
        session whose steps cannot be captured."""
        ...
