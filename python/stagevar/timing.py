"""Step timers for the generation loop: device events on CUDA, ``perf_counter`` on CPU; medians of repeats."""

from __future__ import annotations

import statistics
import time

import torch

from .generate import StepTimer


class CPUTimer(StepTimer):
    """Wall-clock time of each labelled span (the CPU runs eagerly, so no synchronisation is needed)."""

    def __init__(self):
        self._open: dict[str, float] = {}
        self.ms: dict[str, float] = {}

    def start(self, label: str) -> None:
        self._open[label] = time.perf_counter()

    def stop(self, label: str) -> None:
        self.ms[label] = (time.perf_counter() - self._open.pop(label)) * 1e3

    def finish(self) -> dict[str, float]:
        return dict(self.ms)


class CUDAEventTimer(StepTimer):
    """Device time of each labelled span from CUDA events; read after :meth:`finish` synchronises once."""

    def __init__(self):
        self._events: dict[str, tuple[torch.cuda.Event, torch.cuda.Event]] = {}

    def start(self, label: str) -> None:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        self._events[label] = (begin, end)

    def stop(self, label: str) -> None:
        self._events[label][1].record()

    def finish(self) -> dict[str, float]:
        torch.cuda.synchronize()
        return {label: begin.elapsed_time(end) for label, (begin, end) in self._events.items()}


def timer_for(device: torch.device) -> CPUTimer | CUDAEventTimer:
    return CUDAEventTimer() if torch.device(device).type == "cuda" else CPUTimer()


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-label median over repeated runs (labels missing from a run are ignored for that run)."""
    labels = {k for r in runs for k in r}
    return {k: statistics.median(r[k] for r in runs if k in r) for k in sorted(labels)}
