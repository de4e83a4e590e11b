"""FastVAR (Guo et al., ICCV 2025) as released for Infinity, on an Infinity generation session: a peer baseline.

What the released code does (``Infinity/infinity/models/fastvar_utils.py``, ``fastvar_basic.py`` and
``infinity.py`` of csguoh/FastVAR), in our own words and generalised from its
hard-wired 1:1 1024px case to any schedule:

- the last two scale steps are skipped (the released loop skips widths 48 and 64);
- the two steps before them are pruned (widths 32 and 40: 40% and 50% of the tokens dropped) in blocks 3..27;
- in a pruned block each sublayer (self-attention, cross-attention, FFN) recomputes its selection from the current
  residual stream: the tokens farthest (squared L2) from the scale's mean token; only those run the sublayer, with
  their own RoPE positions, and only their keys/values enter the KV cache;
- the dropped tokens receive, as that sublayer's update, the same block's and sublayer's output at the step before
  the first pruned one (24x24), area-upsampled;
- classifier-free guidance, logits, sampling and decoding are unchanged.

The restoration of a sublayer's update is exactly ``stagevar_kernels.restore_merge`` in ``area`` mode.
"""

from __future__ import annotations

import dataclasses

import torch

import stagevar_kernels
import stagevar_kernels.block as block_ops

from ..engine import graphs
from ..fidelity import gather_rows, pivotal_rows
from ..models.infinity.blocks import attend_self, ffn
from ..models.session import GenerationSession
from ..timing import StepTimer

RELEASED_DROP = (0.4, 0.5)  # fraction of tokens dropped at the two pruned steps (released: widths 32 and 40)
RELEASED_LAYERS = range(3, 28)  # the pruned blocks (released: ``is_later_layer``)
RELEASED_SKIP = 2  # skipped last steps (released: widths 48 and 64)


class _Updates:
    """A sublayer's update: computed on the kept tokens, restored from the cached step's update elsewhere."""

    def __init__(self, keep: int | None, cached: dict, record: bool, src_hw, dst_hw, backend, timer: StepTimer):
        self.keep, self.cached, self.record = keep, cached, record
        self.src_hw, self.dst_hw, self.backend, self.timer = src_hw, dst_hw, backend, timer

    def select(self, x: torch.Tensor):
        """The rows this sublayer runs on and their positions (``None``: every row, in order)."""
        if self.keep is None:
            return x, None
        idx = pivotal_rows(x, self.keep)
        return gather_rows(x, idx), idx

    def full(self, name: str, update: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        if idx is None:
            if self.record:
                self.cached[name] = update
            return update
        cache = self.cached[name].to(update.dtype)
        self.timer.start("ops")  # the label of StageVAR's two ops, for the harness's "in ops" row
        out = stagevar_kernels.restore_merge(update, idx, cache, self.src_hw, self.dst_hw, "area", backend=self.backend)
        self.timer.stop("ops")
        return out


def _block(session, block, x: torch.Tensor, si: int, updates: _Updates) -> torch.Tensor:
    """One Infinity block with FastVAR's per-sublayer pruning (the math of ``blocks.block_forward``)."""
    eps = getattr(block, "norm_eps", 1e-6)
    consts = session.block_consts(block)
    g1, g2, s1, s2, sh1, sh2 = consts.ada.unbind(2)

    xs, idx = updates.select(x)
    h = block_ops.norm_modulate(xs, scale=s1, shift=sh1, eps=eps, out_dtype=block.sa.mat_qkv.weight.dtype)
    # only the computed tokens' keys and values enter the cache, as released
    sa_out = attend_self(block.sa, h, session.rope_angles(si, idx), session.block_kv(block), consts)
    x = x + updates.full("sa", sa_out.mul_(g1), idx)

    xs, idx = updates.select(x)
    ca_out = session.cross_attend(block, xs).float()
    x = x + updates.full("ca", ca_out.mul_(getattr(block, "ca_gamma", 1.0)), idx)

    xs, idx = updates.select(x)
    h = block_ops.norm_modulate(xs, scale=s2, shift=sh2, eps=eps, out_dtype=block.ffn.fc1.weight.dtype)
    x = x + updates.full("ffn", ffn(block.ffn, h).mul(g2), idx)
    return x


@dataclasses.dataclass(frozen=True)
class _Pruning:
    """Which steps and blocks are pruned: steps ``first..`` drop ``drop[k - first]`` of their tokens in ``layers``;
    step ``first - 1`` records every sublayer's update (the restoration source)."""

    first: int
    drop: tuple[float, ...]
    layers: frozenset[int]
    backend: str | None


def _step(session, blocks, k: int, x: torch.Tensor, cached: dict, pruning: _Pruning, timer: StepTimer):
    """Every block of step ``k`` on its input ``x`` ``(R, h*w, C)`` (call inside the session's autocast)."""
    tokens, first = x.shape[1], pruning.first
    pruned = k >= first
    keep = tokens - int(tokens * pruning.drop[k - first]) if pruned else None
    for layer, block in enumerate(blocks):
        updates = _Updates(
            keep if pruned and layer in pruning.layers else None,
            cached[id(block)],
            record=k == first - 1,
            src_hw=session.scales[first - 1],
            dst_hw=session.scales[k],
            backend=pruning.backend,
            timer=timer,
        )
        x = _block(session, block, x, k, updates)
    return x


class _GraphedSteps:
    """FastVAR's computed steps as a :class:`stagevar.engine.graphs.StepProgram` (no op seeds: nothing random)."""

    seed_shape = None

    def __init__(self, session, blocks, pruning: _Pruning, steps: int):
        self.blocks, self.pruning, self.steps = blocks, pruning, steps
        backend = graphs.resolved_backend(pruning.backend, session)
        self.spec = ("fastvar", pruning.first, pruning.drop, tuple(sorted(pruning.layers)), backend)

    def seed_values(self) -> list:
        return []

    def new_state(self) -> dict[int, dict]:
        return {id(b): {} for b in self.blocks}

    def save(self, cached: dict[int, dict]) -> dict[int, dict]:
        return {key: dict(updates) for key, updates in cached.items()}

    def restore(self, cached: dict[int, dict], saved: dict[int, dict]) -> None:
        for key, updates in cached.items():
            updates.clear()
            updates.update(saved[key])

    def prepare(self, session, k: int, cached) -> None:
        return None  # FastVAR keeps both guidance rows in every step

    def region(self, session, k: int, x: torch.Tensor, cached: dict, seeds) -> torch.Tensor:
        # The session's autocast around each region alone: an autocast spanning captures would carry its cast
        # cache from one capture into the next. No timer inside: its Python does not run on replay.
        with session.autocast():
            return _step(session, self.blocks, k, x, cached, self.pruning, StepTimer())


def generate(
    session: GenerationSession,
    *,
    drop: tuple[float, ...] = RELEASED_DROP,
    layers=RELEASED_LAYERS,
    skip: int = RELEASED_SKIP,
    backend: str | None = None,
    timer: StepTimer | None = None,
    decode: bool = True,
    cuda_graphs: bool = False,
) -> torch.Tensor | None:
    """Run one Infinity generation the FastVAR way.

    Args:
        session: a fresh :class:`stagevar.models.infinity.InfinitySession` (ours or wrapping an official model).
        drop: fraction of tokens dropped at each pruned step; the pruned steps are the ``len(drop)`` steps before
            the ``skip`` skipped ones, and the step before them is the restoration source.
        layers: the block indices that are pruned.
        skip: number of final steps skipped.
        backend: backend of ``restore_merge``.
        timer: optional step timer (labels ``"scale{k}"``, ``"decode"`` and ``"ops"`` for the restorations, as
            :func:`stagevar.generate`).
        cuda_graphs: capture every computed step's blocks in a CUDA graph and replay them in later generations of
            the same key, as ``stagevar.generate(..., cuda_graphs=True)`` (:mod:`stagevar.engine.graphs`).
    Returns:
        ``(B, 3, H, W)`` float images in ``[0, 1]``, or ``None`` without ``decode``.
    """
    for attr in ("block_consts", "block_kv", "rope_angles", "cross_attend", "autocast"):
        if not hasattr(session, attr):
            raise ValueError(
                f"session: FastVAR as released is an Infinity method; {type(session).__name__} lacks {attr}"
            )
    if session.cfg_layers:
        raise ValueError("session: FastVAR keeps CFG on the logits; cfg_insertion_layer must be 0")
    if cuda_graphs:
        graphs.check_graphable(session)
    n = len(session.scales)
    first = n - skip - len(drop)
    if first < 1 or skip < 0 or not all(0.0 <= d < 1.0 for d in drop):
        raise ValueError(f"drop/skip: {len(drop)} pruned and {skip} skipped steps do not fit {n} scale steps")
    timer = timer or StepTimer()
    blocks = [unit[0] for unit in session.units("block")]
    pruning = _Pruning(first, tuple(drop), frozenset(layers), backend)
    plan_scales = getattr(session, "plan_scales", None)
    if plan_scales is not None:
        plan_scales(n - skip)  # the KV cache holds the computed scales only
    with torch.inference_mode():
        if cuda_graphs:
            graphs.run_steps(session, _GraphedSteps(session, blocks, pruning, n - skip), timer)
        else:
            cached: dict[int, dict] = {id(b): {} for b in blocks}
            with session.autocast():
                for k in range(n - skip):
                    timer.start(f"scale{k}")
                    x = _step(session, blocks, k, session.scale_input(k), cached, pruning, timer)
                    session.finish_scale(k, x)
                    timer.stop(f"scale{k}")
        if not decode:
            return None
        timer.start("decode")
        images = session.decode()  # (under the session's own autocast)
        timer.stop("decode")
    return images
