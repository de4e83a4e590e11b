"""Step timers for the generation loop: device events on CUDA, ``perf_counter`` on CPU; medians of repeats."""

from __future__ import annotations

import statistics
import time

import torch


class StepTimer:
    """Hooks around labelled spans of a generation (no-ops here; the subclasses below measure them)."""

    def start(self, label: str) -> None: ...

    def stop(self, label: str) -> None: ...


class CPUTimer(StepTimer):
    """Wall-clock time of each labelled span, summed over repeats of a label (the CPU runs eagerly)."""

    def __init__(self):
        self._open: dict[str, float] = {}
        self.ms: dict[str, float] = {}

    def start(self, label: str) -> None:
        self._open[label] = time.perf_counter()

    def stop(self, label: str) -> None:
        self.ms[label] = self.ms.get(label, 0.0) + (time.perf_counter() - self._open.pop(label)) * 1e3

    def finish(self) -> dict[str, float]:
        return dict(self.ms)


class CUDAEventTimer(StepTimer):
    """Device time of each labelled span from CUDA events, summed over repeats of a label; read after
    :meth:`finish`, which synchronises once (no synchronisation inside the timed generation)."""

    def __init__(self):
        self._events: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = {}

    def start(self, label: str) -> None:
        begin = torch.cuda.Event(enable_timing=True)
        begin.record()
        self._events.setdefault(label, []).append((begin, torch.cuda.Event(enable_timing=True)))

    def stop(self, label: str) -> None:
        self._events[label][-1][1].record()

    def finish(self) -> dict[str, float]:
        torch.cuda.synchronize()
        return {label: sum(b.elapsed_time(e) for b, e in pairs) for label, pairs in self._events.items()}


def timer_for(device: torch.device) -> CPUTimer | CUDAEventTimer:
    return CUDAEventTimer() if torch.device(device).type == "cuda" else CPUTimer()


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-label median over repeated runs (labels missing from a run are ignored for that run)."""
    labels = {k for r in runs for k in r}
    return {k: statistics.median(r[k] for r in runs if k in r) for k in sorted(labels)}
