"""Data-parallel generation under ``torchrun``: prompts sharded across ranks, results merged on rank 0.

``torchrun --nproc-per-node N -m stagevar generate|eval ...`` (or several nodes through torchrun's rendezvous) sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address; :func:`init` then joins the process group
(NCCL on CUDA, gloo on CPU) and gives each rank its own GPU (``cuda:LOCAL_RANK``). Without torchrun, or with
``WORLD_SIZE=1``, nothing is initialised and the single process does every job.

Jobs are dealt round-robin by their global index (job ``i`` to rank ``i % world``), so the split depends only on
the job list, never on what is already on disk (ranks that filtered first would disagree while others write);
a job's seed derives from its global index, so every image is the same whatever the world size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    """This process's place in the run: ``rank`` of ``world`` processes, and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, jobs: list) -> list:
        """This rank's jobs: every ``world``-th job from position ``rank``."""
        return list(jobs)[self.rank :: self.world]

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` in rank order on rank 0 (``None`` on the others); ``[obj]`` without a group."""
        if self.world == 1:
            return [obj]
        objects = [None] * self.world
        dist.all_gather_object(objects, obj)  # all_gather: gloo and NCCL both support it for objects
        return objects if self.is_main else None

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name}: expected an integer in the environment, got {value!r}") from None


def init(device: str) -> Context:
    """Join the process group when launched with ``WORLD_SIZE > 1``; returns the :class:`Context`.

    Args:
        device: the requested device (``cpu``, ``cuda``, ``cuda:K``); under torchrun a CUDA request becomes
            ``cuda:LOCAL_RANK`` (one GPU per process).
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Context(device=device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
    return Context(rank=rank, world=world, local_rank=local_rank, device=device)


def generate_jobs(ctx: Context, batches: list[tuple[int, list]], out) -> list[tuple[int, list]]:
    """This rank's ``(start, prompts)`` batches of ``stagevar generate`` whose images (``<out>/<index:05d>.png``)
    are not all written yet."""
    from pathlib import Path

    out = Path(out)
    return [
        (start, batch)
        for start, batch in ctx.shard(batches)
        if not all((out / f"{start + i:05d}.png").is_file() for i in range(len(batch)))
    ]
