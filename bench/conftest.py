"""pytest-benchmark set-up of the op microbenchmarks: collection of ``bench_*.py``, the shapes and the timer.

Run on a GPU (full paper shapes, bf16)::

    PYTHONPATH=. python -m pytest bench --benchmark-columns=median,iqr --benchmark-sort=name

Each benchmark stores in ``extra_info``: ``median_us`` (median of CUDA-event timings after warm-up, L2 flushed
before every run, via ``triton.testing.do_bench``), the device, dtype and shape, and for ``restore_merge`` the bytes
moved and the achieved GB/s. pytest-benchmark's own columns are host wall-clock times of synchronised calls.

On a machine without CUDA the paper shapes would take minutes per call (Triton runs in the interpreter, Inductor's
C++ build takes minutes on a 2-core box), so the same benchmarks run on small fp32 shapes as a smoke test::

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

# STAGEVAR_BENCH_DTYPE=bf16|fp16|fp32: every case in that dtype (scripts/gpu_check.py runs bf16, then fp32);
# unset: baselines.DTYPE's default. Set here, before the bench_*.py modules import it.
if os.environ.get("STAGEVAR_BENCH_DTYPE"):
    import baselines

    _DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    _ASKED = os.environ["STAGEVAR_BENCH_DTYPE"]
    if _ASKED not in _DTYPES:
        raise ValueError(f"STAGEVAR_BENCH_DTYPE: expected one of {sorted(_DTYPES)}, got {_ASKED!r}")
    baselines.DTYPE = _DTYPES[_ASKED]


def _rank(rows: int) -> int:
    """The paper's keep ratio: r = round(0.176 * M)."""
    return round(0.176 * rows)


# project_and_sample cases: (name, B, M, D, rank). Infinity-2B (D=2048) at 40x40 (r=282, as in the issue), 48x48
# and 64x64; STAR (D=1920) at 64x64.
if HAS_CUDA:
    PROJECT_CASES = [
        (f"{name}-b{batch}", batch, rows, channels, 282 if rows == 1600 else _rank(rows))
        for name, rows, channels in [
            ("inf2b-40x40", 1600, 2048),
            ("inf2b-48x48", 2304, 2048),
            ("inf2b-64x64", 4096, 2048),
            ("star-64x64", 4096, 1920),
        ]
        for batch in (1, 4)
    ]
else:  # smoke shapes: awkward sizes, a few interpreter programs each
    PROJECT_CASES = [("smoke-37", 2, 37, 19, 7), ("smoke-64", 1, 64, 32, 11)]

# restore_merge cases: (name, B, rank, D, src_hw, dst_hw, mode). The default mode "area" everywhere; the
# four modes at Infinity-2B 64x64, B=1.
if HAS_CUDA:
    _GRIDS = [
        ("inf2b-40x40", 2048, (32, 32), (40, 40)),
        ("inf2b-48x48", 2048, (40, 40), (48, 48)),
        ("inf2b-64x64", 2048, (48, 48), (64, 64)),
        ("star-64x64", 1920, (48, 48), (64, 64)),
    ]
    RESTORE_CASES = [
        (f"{name}-b{batch}-area", batch, 282 if dst == (40, 40) else _rank(dst[0] * dst[1]), channels, src, dst, "area")
        for name, channels, src, dst in _GRIDS
        for batch in (1, 4)
    ] + [
        (f"inf2b-64x64-b1-{mode}", 1, _rank(4096), 2048, (48, 48), (64, 64), mode)
        for mode in ("nearest", "bilinear", "bicubic")
    ]
else:
    RESTORE_CASES = [
        (f"smoke-{mode}", 2, 11, 32, (6, 6), (8, 8), mode) for mode in ("nearest", "bilinear", "bicubic", "area")
    ] + [("smoke-down-area", 1, 5, 19, (8, 6), (5, 3), "area")]


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
    """``measure(fn, nbytes=None, **info)``: time ``fn`` and fill ``benchmark.extra_info``; returns ``fn()``."""

    def run(fn, nbytes: int | None = None, **info):
        benchmark.extra_info.update({"device": torch.cuda.get_device_name() if HAS_CUDA else "cpu", **info})
        if benchmark.disabled:  # --benchmark-disable: one call, nothing timed (CI smoke)
            return benchmark(fn)
        median_us = _device_median_us(fn) if HAS_CUDA else _host_median_us(fn)
        benchmark.extra_info["median_us"] = round(median_us, 2)
        if nbytes is not None:
            benchmark.extra_info["bytes"] = nbytes
            benchmark.extra_info["gbps"] = round(nbytes / median_us / 1e3, 1)

        def synced():
            out = fn()
            if HAS_CUDA:
                torch.cuda.synchronize()
            return out

        return benchmark.pedantic(synced, rounds=20 if HAS_CUDA else 3, warmup_rounds=3 if HAS_CUDA else 1)

    return run
