"""One acceleration unit at one fidelity-refinement step: Algorithm 1's inner body.

project (RP) -> run the unit's blocks on the r projected rows, each at the RoPE position of its representative
token -> restore the full output from the computed rows and the unit's upsampled output at the previous step
(RTR, Eq. 7-8). The Table 2 variants swap the projection (``svd``) or the restoration (``lls``); ``prune`` keeps
FastVAR's pivotal tokens unprojected (an ablation of the projection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import stagevar_kernels

from .models.session import GenerationSession
from .timing import StepTimer

_MASK63 = (1 << 63) - 1


def unit_seed(base: int, step: int, unit: int) -> int:
    """A well-mixed 63-bit projection seed for (generation seed, scale step, unit): SplitMix64 finalisers."""
    z = (base * 0x9E3779B97F4A7C15 + (step + 1) * 0xBF58476D1CE4E5B9 + (unit + 1) * 0x94D049BB133111EB) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (z ^ (z >> 31)) & _MASK63


def rank_for(ratio: float, tokens: int) -> int:
    """``r = max(1, round(ratio * M))``, at most ``M``."""
    return min(tokens, max(1, round(ratio * tokens)))


def run_blocks(
    session: GenerationSession, blocks, x: torch.Tensor, step: int, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """The unit's blocks in order on ``x`` ``(R, L, C)``."""
    for block in blocks:
        x = session.run_block(block, x, step, positions)
    return x


def svd_features(x: torch.Tensor, rank: int) -> torch.Tensor:
    """Exact rank-r features ``Sigma_r V_r^T`` of every row-batch item (the paper's Fig. 3 (3)): ``(R, r, C)``."""
    _, s, vh = torch.linalg.svd(x.float(), full_matrices=False)
    return (s[:, :rank, None] * vh[:, :rank]).to(x.dtype)


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b, j]]``: ``(R, L, C)`` and int64 ``(R, r)`` -> ``(R, r, C)``."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def pivotal_rows(x: torch.Tensor, rank: int) -> torch.Tensor:
    """FastVAR's token choice: the ``rank`` rows farthest (squared L2) from the row mean, sorted. int64 ``(R, r)``."""
    xf = x.float()
    score = (xf - xf.mean(dim=1, keepdim=True)).square().sum(dim=-1)
    return torch.topk(score, rank, dim=1).indices.sort(dim=1).values


def lls_restore(x: torch.Tensor, xr: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Least-squares restoration (Eq. 6): ``W = argmin ||W xr - x||_F``, output ``W y``. Shapes ``(R, *, C)``."""
    # Solve xr^T W^T = x^T for W^T (R, r, M) in float32; lstsq handles the under-determined case (r > C).
    w_t = torch.linalg.lstsq(xr.float().transpose(1, 2), x.float().transpose(1, 2)).solution
    return torch.bmm(w_t.transpose(1, 2), y.float()).to(y.dtype)


@dataclass(frozen=True)
class UnitOptions:
    """What every fidelity unit of one generation shares, built once per generation (:meth:`from_schedule`).

    Attributes:
        restore_mode: ``Up``'s interpolation (``area``, ``nearest``, ``bilinear``, ``bicubic``).
        projection: ``rp`` (the paper), ``svd`` or ``prune`` (Table 2 ablations).
        restoration: ``rtr`` (the paper) or ``lls``.
        backend: backend of the two StageVAR ops (None: the device's default).
        timer: the step timer; the two ops are timed under ``"ops"``.
        seed: the generation's base projection seed (unit ``u`` of step ``k`` uses ``unit_seed(seed, k, u)``).
        seeds_table: optional int64 ``(steps, units)`` device tensor holding ``unit_seed(seed, k, u)``; when set,
            the units pass the one-element view ``seeds_table[k, u]`` to the op instead of the Python int (same 64
            bits, same numbers), so a captured graph draws a new generation's numbers after the table is rewritten
            in place. Eager generations leave it None.
    """

    restore_mode: str = "area"
    projection: str = "rp"
    restoration: str = "rtr"
    backend: str | None = None
    timer: StepTimer = field(default_factory=StepTimer)
    seed: int = 0
    seeds_table: torch.Tensor | None = None

    def unit_seed(self, step: int, unit: int) -> int | torch.Tensor:
        """The projection seed of (``step``, ``unit``): ``seeds_table[step, unit]`` (a view) or the Python int."""
        if self.seeds_table is not None:
            return self.seeds_table[step, unit]
        return unit_seed(self.seed, step, unit)

    @classmethod
    def from_schedule(cls, schedule, *, backend=None, timer=None, seed=None) -> UnitOptions:
        """The options of a :class:`~stagevar.schedule.StageSchedule` (``seed`` None: ``schedule.seed``)."""
        return cls(
            restore_mode=schedule.restore_mode,
            projection=schedule.projection,
            restoration=schedule.restoration,
            backend=backend,
            timer=timer or StepTimer(),
            seed=schedule.seed if seed is None else int(seed),
        )


PAPER_OPTIONS = UnitOptions()  # the paper's defaults, built once (so a traced unit builds no object)


def fidelity_unit(
    session: GenerationSession,
    blocks,
    x: torch.Tensor,
    step: int,
    *,
    rank: int,
    seed: int | torch.Tensor,
    cache: torch.Tensor,
    cache_hw: tuple[int, int],
    options: UnitOptions | None = None,
) -> torch.Tensor:
    """Run one unit on a rank-``rank`` projection of ``x`` and restore its full output.

    Args:
        session: the generation in flight.
        blocks: the unit's blocks.
        x: ``(R, h*w, C)`` the unit's input at scale ``step``.
        rank: projected rows ``r``.
        seed: the projection seed of this (step, unit): an int, or a one-element int64 tensor on ``x.device``.
        cache: ``(R, h0*w0, C)`` the unit's output at the previous step (RTR's fill).
        cache_hw: ``(h0, w0)``.
        options: the generation's :class:`UnitOptions` (None: the paper's defaults).
    Returns:
        ``(R, h*w, C)`` the unit's restored output, ``x.dtype``.
    """
    opt = options or PAPER_OPTIONS
    hw = session.scales[step]
    timer, backend = opt.timer, opt.backend
    timer.start("ops")
    if opt.projection == "prune":  # ablation: FastVAR's pivotal rows as they are, no projection
        idx = pivotal_rows(x, rank)
        xr = gather_rows(x, idx)
    else:
        xr, idx = stagevar_kernels.project_and_sample(x, rank, seed, backend=backend)
    timer.stop("ops")
    if opt.projection == "svd":
        xr = svd_features(x, rank)
    y = run_blocks(session, blocks, xr, step, positions=idx)
    if opt.restoration == "lls":
        return lls_restore(x, xr, y)
    timer.start("ops")
    out = stagevar_kernels.restore_merge(y, idx, cache.to(y.dtype), cache_hw, hw, opt.restore_mode, backend=backend)
    timer.stop("ops")
    return out
