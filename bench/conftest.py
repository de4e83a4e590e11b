"""pytest-benchmark set-up of the op microbenchmarks: collection of ``bench_*.py``, the shapes and the timer.

Run on a GPU (full paper shapes; bf16 and fp32, the dtypes the pipeline sends: the residual stream is fp32)::

    PYTHONPATH=. python -m pytest bench --benchmark-columns=median,iqr --benchmark-sort=name

``STAGEVAR_BENCH_DTYPES=bf16,fp32`` (the default; any of ``bf16``, ``fp16``, ``fp32``) chooses the dtypes. The dtype
is part of each case's name (``inf2b-40x40-b1-bf16``), so a benchmark's id stays ``[<case>-<impl>]``.

Each benchmark stores in ``extra_info``: ``median_us`` (median of CUDA-event timings after warm-up, L2 flushed
before every run, via ``triton.testing.do_bench``), the device, dtype and shape, the bytes the op must move and the
FLOPs it must do, and beside the median the roofline of the device (``roofline_us``: the larger of bytes / HBM
bandwidth and FLOPs / tensor-core peak, for the known devices of ``DEVICE_PEAKS``) and ``of_roofline`` (median over
roofline). pytest-benchmark's own columns are host wall-clock times of synchronised calls.

On a machine without CUDA the paper shapes would take minutes per call (Triton runs in the interpreter, Inductor's
C++ build takes minutes on a 2-core box), so the same benchmarks run on small shapes as a smoke test::

    PYTHONPATH=. python -m pytest bench --benchmark-disable -q

There the "compile" baseline is ``torch.compile(backend="eager")`` (Dynamo tracing only), and the Triton backend
runs under ``TRITON_INTERPRET=1`` (set here, before any kernel module is imported).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

_DTYPE_NAMES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def bench_dtypes() -> list[tuple[str, torch.dtype]]:
    """The dtypes of ``STAGEVAR_BENCH_DTYPES`` (comma-separated ``bf16``/``fp16``/``fp32``; default bf16,fp32)."""
    names = [n.strip() for n in os.environ.get("STAGEVAR_BENCH_DTYPES", "bf16,fp32").split(",") if n.strip()]
    unknown = [n for n in names if n not in _DTYPE_NAMES]
    if unknown or not names:
        raise ValueError(f"STAGEVAR_BENCH_DTYPES: expected names among {sorted(_DTYPE_NAMES)}, got {names}")
    return [(n, _DTYPE_NAMES[n]) for n in names]


def _rank(rows: int) -> int:
    """The paper's keep ratio: r = round(0.176 * M)."""
    return round(0.176 * rows)


# project_and_sample cases: (name, B, M, D, rank, dtype). Infinity-2B (D=2048) at 40x40 (r=282, as in the issue),
# 48x48 and 64x64; STAR (D=1920) at 64x64; B in {1, 4}.
if HAS_CUDA:
    _PROJECT_SHAPES = [
        (f"{name}-b{batch}", batch, rows, channels, _rank(rows))
        for name, rows, channels in [
            ("inf2b-40x40", 1600, 2048),
            ("inf2b-48x48", 2304, 2048),
            ("inf2b-64x64", 4096, 2048),
            ("star-64x64", 4096, 1920),
        ]
        for batch in (1, 4)
    ]
else:  # smoke shapes: awkward sizes, a few interpreter programs each
    _PROJECT_SHAPES = [("smoke-37", 2, 37, 19, 7), ("smoke-64", 1, 64, 32, 11)]
PROJECT_CASES = [(f"{c[0]}-{dn}", *c[1:], dt) for c in _PROJECT_SHAPES for dn, dt in bench_dtypes()]

# restore_merge cases: (name, B, rank, D, src_hw, dst_hw, mode, dtype). The default mode "area" everywhere; the
# four modes at Infinity-2B 64x64, B=1.
if HAS_CUDA:
    _GRIDS = [
        ("inf2b-40x40", 2048, (32, 32), (40, 40)),
        ("inf2b-48x48", 2048, (40, 40), (48, 48)),
        ("inf2b-64x64", 2048, (48, 48), (64, 64)),
        ("star-64x64", 1920, (48, 48), (64, 64)),
    ]
    _RESTORE_SHAPES = [
        (f"{name}-b{batch}-area", batch, _rank(dst[0] * dst[1]), channels, src, dst, "area")
        for name, channels, src, dst in _GRIDS
        for batch in (1, 4)
    ] + [
        (f"inf2b-64x64-b1-{mode}", 1, _rank(4096), 2048, (48, 48), (64, 64), mode)
        for mode in ("nearest", "bilinear", "bicubic")
    ]
else:
    _RESTORE_SHAPES = [
        (f"smoke-{mode}", 2, 11, 32, (6, 6), (8, 8), mode) for mode in ("nearest", "bilinear", "bicubic", "area")
    ] + [("smoke-down-area", 1, 5, 19, (8, 6), (5, 3), "area")]
RESTORE_CASES = [(f"{c[0]}-{dn}", *c[1:], dt) for c in _RESTORE_SHAPES for dn, dt in bench_dtypes()]

# Device peaks for the roofline printed beside each median: (HBM bytes/s, dense bf16/fp16 tensor-core FLOP/s, dense
# TF32 FLOP/s), from the vendor data sheets (SXM parts). fp32 inputs are held to the TF32 peak (the fastest tensor-
# core path that reads float32; the kernels' 3xTF32 does three such products).
DEVICE_PEAKS = {
    "H200": (4.8e12, 989e12, 494e12),
    "H100": (3.35e12, 989e12, 494e12),
}


def roofline_us(nbytes: int, flops: int, dtype: torch.dtype) -> float | None:
    """max(bytes / bandwidth, FLOPs / peak) in microseconds on this device, or None for an unlisted device."""
    if not HAS_CUDA:
        return None
    name = torch.cuda.get_device_name()
    peaks = next((p for key, p in DEVICE_PEAKS.items() if key in name), None)
    if peaks is None:
        return None
    bandwidth, half_peak, tf32_peak = peaks
    peak = tf32_peak if dtype == torch.float32 else half_peak
    return 1e6 * max(nbytes / bandwidth, flops / peak)


def pytest_collect_file(file_path, parent):
    """Collect ``bench_*.py`` (pytest's default pattern is ``test_*.py``)."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_generate_tests(metafunc):
    if "project_case" in metafunc.fixturenames:
        metafunc.parametrize("project_case", PROJECT_CASES, ids=[c[0] for c in PROJECT_CASES])
    if "restore_case" in metafunc.fixturenames:
        metafunc.parametrize("restore_case", RESTORE_CASES, ids=[c[0] for c in RESTORE_CASES])


def _device_median_us(fn) -> float:
    """Median device time of ``fn`` in microseconds: CUDA events, warm-up, L2 flushed before each run."""
    import triton.testing

    return 1000.0 * triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def _host_median_us(fn, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


@pytest.fixture
def measure(benchmark):
    """``measure(fn, nbytes=None, flops=0, dtype=None, **info)``: time ``fn``, fill ``benchmark.extra_info`` (with
    the roofline when ``nbytes`` and ``dtype`` are given); returns ``fn()``."""

    def run(fn, nbytes: int | None = None, flops: int = 0, dtype: torch.dtype | None = None, **info):
        device = torch.cuda.get_device_name() if HAS_CUDA else "cpu"
        benchmark.extra_info.update({"device": device, "dtype": str(dtype).replace("torch.", ""), **info})
        bound = roofline_us(nbytes, flops, dtype) if nbytes is not None and dtype is not None else None
        if nbytes is not None:
            benchmark.extra_info.update({"bytes": nbytes, "flops": flops})
        if bound is not None:
            benchmark.extra_info["roofline_us"] = round(bound, 2)
        if benchmark.disabled:  # --benchmark-disable: one call, nothing timed (CI smoke)
            return benchmark(fn)
        median_us = _device_median_us(fn) if HAS_CUDA else _host_median_us(fn)
        benchmark.extra_info["median_us"] = round(median_us, 2)
        if nbytes is not None:
            benchmark.extra_info["gbps"] = round(nbytes / median_us / 1e3, 1)
        if bound is not None:
            benchmark.extra_info["of_roofline"] = round(median_us / bound, 2)

        def synced():
            out = fn()
            if HAS_CUDA:
                torch.cuda.synchronize()
            return out

        return benchmark.pedantic(synced, rounds=20 if HAS_CUDA else 3, warmup_rounds=3 if HAS_CUDA else 1)

    return run
