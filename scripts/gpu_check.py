"""The project's one GPU check: every GPU figure and check in one command that fits one device lease.

    bash scripts/gpu_check.sh                 # on a GPU machine: 8 minutes at most, results in $OUT
    bash scripts/gpu_check.sh --dry-run       # the CPU rehearsal: every stage on tiny shapes (about a minute)
    bash scripts/gpu_check.sh --only ops,e2e  # a subset (a warm machine keeps the extension built earlier)

Stages, in order of value, each with its own time budget (seconds, enforced: SIGINT to the stage's process group,
then SIGKILL), so a slow stage cannot eat the next one's time:

    env        versions, device, driver, tools (everything the summary's header states)
    build      the CUDA extension for sm_90 only, in parallel; on failure the Triton backend carries on
    tests      the GPU test tier (tests marked ``cuda``: the ops' CUDA and Triton kernels, the engine)
    sanitizer  compute-sanitizer memcheck and racecheck on one call of each op and backend at awkward sizes
    ops        op microbenchmarks at the paper's shapes, every backend and baseline, bf16 then fp32
    e2e        ``stagevar bench``: Infinity-2B 1024px batch 1, then batch 4, then Infinity-8B and STAR if time remains

Each stage gets its own budget (``STAGES``); what the stages before it leave unused goes to the ops stage (whose
later sub-runs, fp32 and the compiled baselines, need it most), what ops leaves to e2e, whose optional runs start
only when their estimated time is left. ``$OUT`` (default ``./gpu_results``) receives at most
eight files, rewritten after every stage and every sub-run, so a run killed at any point still returns what was
done: summary.json (everything), summary.md (tables for bench/RESULTS.md), driver.log, and one log per stage
(build.log, tests.log, sanitizer.log, ops.log, e2e.log). Temporary files go to a temporary folder, not ``$OUT``.

``--payload`` is the small program that compute-sanitizer runs (one call of each op and backend, exact checks).
This file imports nothing beyond the standard library at module level: torch runs in the stages' subprocesses, so
the driver itself never holds a CUDA context.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG_LIMIT_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB
OUT_FILES = (
    "summary.json",
    "summary.md",
    "driver.log",
    "build.log",
    "tests.log",
    "sanitizer.log",
    "ops.log",
    "e2e.log",
)  # the device tool brings back at most 8 files from $OUT
MIN_START_S = 5.0  # a sub-run with less time than this left is skipped, not started
GRACE_S = 15.0  # after SIGINT (pytest then writes its JSON and summary), before SIGKILL


# ----------------------------------------------------------------------------------------------- plan
@dataclass
class Stage:
    """One stage: ``run(ctx, budget_s) -> dict`` (status, note, data); ``budget_s`` on a GPU and in the rehearsal."""

    name: str
    gpu_budget_s: float
    dry_budget_s: float
    run: Callable
    what: str
    takes_leftover: bool = False  # also gets the time the stages before it left unused


def stage_budget(budgets: list[float], index: int, remaining_s: float, takes_leftover: bool = False) -> float:
    """Seconds stage ``index`` may use when ``remaining_s`` are left to the deadline.

    A stage gets its own budget, less any shortfall that would cut into the budgets of the stages after it. A stage
    that ``takes_leftover``, and the last stage, get everything but those later budgets: the time that earlier
    stages saved.
    """
    later = sum(budgets[index + 1 :])
    if takes_leftover or index == len(budgets) - 1:
        return max(0.0, remaining_s - later)
    return max(0.0, min(budgets[index], remaining_s - later))


def sub_budget(reserves: list[float], index: int, remaining_s: float) -> float:
    """Seconds sub-run ``index`` of a stage may use: all that is left but the reserves of the sub-runs after it."""
    return max(0.0, remaining_s - sum(reserves[index + 1 :]))


# ----------------------------------------------------------------------------------------------- processes
@dataclass
class CmdResult:
    rc: int | None
    seconds: float
    timed_out: bool
    output: str
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.started and not self.timed_out and self.rc == 0


class LogFile:
    """Appends to a file in ``$OUT``, capped below the device tool's size limit."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size >= LOG_LIMIT_BYTES:
                return
            data = text.encode("utf-8", "replace")
            if size + len(data) >= LOG_LIMIT_BYTES:
                data = data[: LOG_LIMIT_BYTES - size] + b"\n[log truncated at 15 MiB]\n"
            with open(self.path, "ab") as f:
                f.write(data)


def run_cmd(
    cmd: list[str], log: LogFile, budget_s: float, env: dict | None = None, grace_s: float = GRACE_S
) -> CmdResult:
    """Run ``cmd`` (output appended to ``log``) for at most ``budget_s`` seconds.

    At the budget the whole process group gets SIGINT (pytest then still writes its JSON and its summary line),
    and SIGKILL ``grace_s`` later. Never raises for the command's failure: the result says what happened.
    """
    if budget_s < MIN_START_S:
        log.write(f"\n$ {shlex.join(cmd)}\n[not started: {budget_s:.0f} s left]\n")
        return CmdResult(None, 0.0, False, "", started=False)
    log.write(f"\n$ {shlex.join(cmd)}\n[budget {budget_s:.0f} s, {_utc_now()}]\n")
    lines: list[str] = []
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as err:
        log.write(f"[could not start: {err}]\n")
        return CmdResult(None, 0.0, False, str(err), started=False)

    def pump():
        for line in proc.stdout:
            lines.append(line)
            log.write(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _signal_group(proc, signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    except BaseException:  # the driver itself is stopped: its stage's processes go with it
        _signal_group(proc, signal.SIGKILL)
        raise
    reader.join(timeout=5)
    seconds = time.monotonic() - start
    note = f"[timed out after {budget_s:.0f} s]" if timed_out else f"[exit {proc.returncode}]"
    log.write(f"{note} [{seconds:.1f} s]\n")
    return CmdResult(proc.returncode, seconds, timed_out, "".join(lines))


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group has already exited
        os.killpg(proc.pid, sig)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ----------------------------------------------------------------------------------------------- context
@dataclass
class Context:
    """What every stage needs: where to write, the device, the deadline, the summary being built."""

    out: Path
    tmp: Path
    dry_run: bool
    python: str
    deadline: float
    summary: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    echo: bool = True

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    def log(self, name: str) -> LogFile:
        if name not in self.logs:
            self.logs[name] = LogFile(self.out / name)
        return self.logs[name]

    def say(self, text: str) -> None:
        """A line of the driver's own progress: stdout and driver.log."""
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        if self.echo:
            print(line, flush=True)
        self.log("driver.log").write(line + "\n")

    def env(self, **extra: str) -> dict:
        env = dict(os.environ)
        paths = [str(ROOT / "python"), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONUNBUFFERED"] = "1"
        if self.dry_run:  # Triton kernels on CPU tensors run only in the interpreter
            env["TRITON_INTERPRET"] = "1"
        env.update(extra)
        return env

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def write_summary(self) -> None:
        self.summary["updated_utc"] = _utc_now()
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=1, default=str))
        tmp.replace(self.out / "summary.json")
        (self.out / "summary.md").write_text(render_markdown(self.summary))


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def pytest_counts(output: str) -> dict:
    """``{"passed": 3, "failed": 1, ...}`` from pytest's last summary line (empty when there is none)."""
    for line in reversed(output.splitlines()):
        found = re.findall(
            r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)", line.replace("=", " ")
        )
        if found and (" in " in line or "no tests ran" in line):
            counts = {}
            for n, word in found:
                key = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[key] = counts.get(key, 0) + int(n)
            return counts
    return {}


def failure_lines(output: str, limit: int = 20) -> list[str]:
    return [ln.strip() for ln in output.splitlines() if ln.startswith(("FAILED ", "ERROR "))][:limit]


# ----------------------------------------------------------------------------------------------- stage: env
ENV_PROBE = r"""
import importlib.metadata, json, os, platform
info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "host": platform.node()}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device=p.name, capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2**30, 1))
except Exception as err:
    info["torch_error"] = repr(err)
for name in ("triton", "pytest", "pytest-benchmark", "pytest-timeout", "pytest-xdist", "transformers"):
    try:
        info[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        info[name] = None
print("ENV " + json.dumps(info))
"""


def _first_line(cmd: list[str], pattern: str | None = None) -> str | None:
    """The first output line of a quick tool query (matching ``pattern``), or None when the tool is absent."""
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).is_file():
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and (pattern is None or re.search(pattern, ln))]
    return lines[0] if lines else None


def find_sanitizer() -> str | None:
    candidates = [os.environ.get("COMPUTE_SANITIZER"), shutil.which("compute-sanitizer")]
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            candidates.append(str(Path(home) / "bin" / "compute-sanitizer"))
    return next((c for c in candidates if c and Path(c).is_file()), None)


def stage_env(ctx: Context, budget_s: float) -> dict:
    res = run_cmd([ctx.python, "-c", ENV_PROBE], ctx.log("driver.log"), budget_s, ctx.env())
    info = {}
    for line in res.output.splitlines():
        if line.startswith("ENV "):
            info = json.loads(line[4:])
    info["date_utc"] = _utc_now()
    info["platform"] = platform.platform()
    info["nvidia_smi"] = _first_line(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm", "--format=csv,noheader"]
    )
    info["nvcc"] = _first_line(["nvcc", "--version"], r"release")
    sanitizer = find_sanitizer()
    info["compute_sanitizer"] = _first_line([sanitizer, "--version"], r"[Vv]ersion") if sanitizer else None
    # The device machine gets a copy of the tree without .git: the caller can name the commit.
    info["commit"] = os.environ.get("STAGEVAR_COMMIT") or _first_line(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]
    )
    ctx.summary["env"] = info
    if not res.ok or "torch" not in info:
        return {"status": "failed", "note": f"environment probe failed (exit {res.rc}); see driver.log"}
    device = info.get("device") or "cpu"
    note = f"{device}, torch {info['torch']} (CUDA {info.get('torch_cuda')}), triton {info.get('triton')}"
    return {"status": "ok", "note": note}


# ----------------------------------------------------------------------------------------------- stage: build
IMPORT_CHECK = (
    "import json, sys, stagevar_kernels as s; "
    "print('EXT ' + json.dumps({'has_ext': s.HAS_EXT, 'backends': s.available_backends(sys.argv[1])}))"
)


def stage_build(ctx: Context, budget_s: float) -> dict:
    log = ctx.log("build.log")
    if ctx.dry_run:  # CI's install built the CPU extension already; run the build command without an extension
        env = ctx.env(STAGEVAR_NO_EXT="1")
    else:
        env = ctx.env(
            TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
            MAX_JOBS=os.environ.get("MAX_JOBS", str(os.cpu_count() or 16)),
        )
    check_reserve = 30.0 if not ctx.dry_run else 15.0
    build = run_cmd([ctx.python, "setup.py", "build_ext", "--inplace"], log, budget_s - check_reserve, env)
    check = run_cmd([ctx.python, "-c", IMPORT_CHECK, ctx.device], log, check_reserve, ctx.env())
    ext = {}
    for line in check.output.splitlines():
        if line.startswith("EXT "):
            ext = json.loads(line[4:])
    data = {"build_s": round(build.seconds, 1), "rc": build.rc, "extension": ext}
    backends = ext.get("backends", [])
    if not build.ok:
        tail = "\n".join(build.output.splitlines()[-15:])
        ctx.say(f"build failed; last lines of build.log:\n{tail}")
        why = "timed out" if build.timed_out else f"failed (exit {build.rc})"
        return {"status": "failed", "note": f"build {why}: going on with {backends or 'no'} backends", **data}
    if ctx.dry_run:
        return {
            "status": "ok",
            "note": f"dry run: build command ran, no extension compiled; backends {backends}",
            **data,
        }
    if "cuda" not in backends:
        return {"status": "failed", "note": f"built, but the CUDA backend is missing: backends {backends}", **data}
    return {"status": "ok", "note": f"sm_90 build in {build.seconds:.0f} s; backends {backends}", **data}


# ----------------------------------------------------------------------------------------------- stage: tests
def stage_tests(ctx: Context, budget_s: float) -> dict:
    cmd = [ctx.python, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--maxfail=25"]
    if ctx.dry_run:  # a tiny subset: the CPU tier of the validation tests, and the CUDA op tests (they skip here)
        cmd += ["tests/stagevar_kernels/test_validation.py", "tests/stagevar_kernels/test_cuda_ops.py"]
    else:  # the GPU tier: the CUDA ops (compiled extension), the Triton kernels on CUDA, the engine
        cmd += ["-m", "cuda", "tests"]
        if has_module("xdist"):  # Triton's compiles dominate and are CPU-bound: spread them over the cores
            cmd += ["-n", "8"]
    per_test = "timeout (pytest-timeout, 90 s per test)" if has_module("pytest_timeout") else "process budget only"
    if has_module("pytest_timeout"):
        cmd += ["--timeout=90"]
    res = run_cmd(cmd, ctx.log("tests.log"), budget_s, ctx.env())
    counts = pytest_counts(res.output)
    failures = failure_lines(res.output)
    for line in failures:
        ctx.say(f"  {line}")
    data = {"counts": counts, "failures": failures, "pytest_s": round(res.seconds, 1), "per_test_limit": per_test}
    counted = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no summary line"
    if res.timed_out:
        return {"status": "timeout", "note": f"budget reached: {counted}", **data}
    if res.rc != 0 or (not ctx.dry_run and not counts.get("passed")):
        return {"status": "failed", "note": f"{counted} (exit {res.rc})", **data}
    return {"status": "ok", "note": counted, **data}


# ----------------------------------------------------------------------------------------------- stage: sanitizer
def stage_sanitizer(ctx: Context, budget_s: float) -> dict:
    log = ctx.log("sanitizer.log")
    payload = [ctx.python, str(Path(__file__).resolve()), "--payload", "--device", ctx.device]
    sanitizer = find_sanitizer()
    if ctx.dry_run or sanitizer is None:
        # No GPU (or no tool): the payload still runs bare, so the program compute-sanitizer runs is known to work.
        res = run_cmd(payload, log, budget_s, ctx.env())
        ran = "ok" if res.ok else ("timed out" if res.timed_out else f"failed (exit {res.rc})")
        why = "no GPU" if ctx.dry_run else "compute-sanitizer not found"
        status = "skipped" if res.ok else ("timeout" if res.timed_out else "failed")
        return {"status": status, "note": f"skipped: {why}; the payload ran on {ctx.device} without it: {ran}"}
    # One cudaMalloc per tensor: an overrun of a tensor is reported instead of landing in the allocator's pool.
    env = ctx.env(PYTORCH_NO_CUDA_MEMORY_CACHING="1")
    common = [sanitizer, "--error-exitcode", "1", "--print-limit", "20"]
    tools = [
        ("memcheck", common + ["--tool", "memcheck", "--leak-check", "no"] + payload + ["--size", "all"]),
        # racecheck instruments every shared-memory access (often 100x slower): small sizes, GPU backends only.
        ("racecheck", common + ["--tool", "racecheck", "--racecheck-report", "all"] + payload + ["--racecheck"]),
    ]
    start = time.monotonic()
    results, status = {}, "ok"
    for i, (tool, cmd) in enumerate(tools):
        left = budget_s - (time.monotonic() - start)
        res = run_cmd(cmd, log, sub_budget([0.6 * budget_s, 0.4 * budget_s], i, left), env)
        summary = [ln.strip() for ln in res.output.splitlines() if "SUMMARY" in ln or "PAYLOAD " in ln]
        verdict = "ok" if res.ok else ("timeout" if res.timed_out else f"failed (exit {res.rc})")
        if not res.started:
            verdict = "not started (no time left)"
        results[tool] = {"verdict": verdict, "seconds": round(res.seconds, 1), "summary": summary}
        ctx.say(f"  {tool}: {verdict} {summary[-1] if summary else ''}")
        if verdict != "ok":
            status = "timeout" if res.timed_out or not res.started else "failed"
    note = "; ".join(f"{tool} {r['verdict']}" for tool, r in results.items())
    return {"status": status, "note": note, "tools": results}


def payload(device: str, size: str, racecheck: bool) -> int:
    """One call of each op and backend at awkward sizes and layouts, with exact checks (run under the sanitizer).

    Exact because every backend must agree there: ``idx`` is the random stream's contract, and ``restore_merge``
    copies ``y``'s rows into the selected positions bit for bit. ``racecheck``: the GPU backends only, and
    ``restore_merge`` (its kernels use no shared memory today) at one dtype and width. Returns an exit code.
    """
    import torch

    import stagevar_kernels as sk
    from stagevar_kernels.testing import strided_like

    backends = [b for b in sk.available_backends(device) if not (racecheck and b == "reference")]
    dtypes = [torch.float32, torch.bfloat16, torch.float16] if device == "cuda" else [torch.float32]
    # (B, M, D, rank): D = 130 is not a multiple of any vector width; M = 37 a few partial tiles.
    project_cases = [(2, 37, 130, 7)]
    if size == "all":
        project_cases.append((1, 1600, 2048, 282))  # Infinity-2B's 40x40 step, the shape that matters most
    calls = 0
    for (batch, rows, channels, rank), dtype in [(c, d) for c in project_cases for d in dtypes]:
        x = torch.randn(batch, rows, channels, device=device, dtype=dtype)
        _, idx_ref = sk.project_and_sample(x, rank, 77, backend="reference")
        for layout in ("contiguous", "sliced"):
            xs = strided_like(x, layout)
            for backend in backends:
                xr, idx = sk.project_and_sample(xs, rank, 77, backend=backend)
                calls += 1
                if not torch.equal(idx, idx_ref) or not torch.isfinite(xr).all():
                    print(f"PAYLOAD mismatch: project_and_sample {backend} {dtype} {layout} {tuple(x.shape)}")
                    return 1
    # restore_merge: D = 19 (scalar path) and 136 (16-byte vectors); an upsampling grid of odd sides; one index
    # out of range (must be ignored, never written).
    widths, restore_dtypes = ((136,), dtypes[:1]) if racecheck else ((19, 136), dtypes)
    for channels, dtype, mode in [(c, d, m) for c in widths for d in restore_dtypes for m in sk.RESTORE_MODES]:
        batch, rank, src, dst = 2, 5, (6, 5), (9, 7)
        y = torch.randn(batch, rank, channels, device=device, dtype=dtype)
        cache = torch.randn(batch, src[0] * src[1], channels, device=device, dtype=dtype)
        idx = torch.stack([torch.randperm(dst[0] * dst[1], device=device)[:rank].sort().values for _ in range(batch)])
        idx[1, -1] = dst[0] * dst[1] + 3
        for backend in backends:
            out = sk.restore_merge(y, idx, cache, src, dst, mode, backend=backend)
            calls += 1
            rows_ok = torch.equal(out[0, idx[0]], y[0]) and torch.equal(out[1, idx[1, :-1]], y[1, :-1])
            if not rows_ok or not torch.isfinite(out).all():
                print(f"PAYLOAD mismatch: restore_merge {backend} {dtype} {mode} D={channels}")
                return 1
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"PAYLOAD ok: {calls} calls, backends {backends}, dtypes {[str(d) for d in dtypes]}, sizes {size}")
    return 0


# ----------------------------------------------------------------------------------------------- stage: ops
def slim_benchmark(bench: dict) -> dict:
    """The fields of a pytest-benchmark entry that the summary needs (its raw timing data left out)."""
    extra = bench.get("extra_info", {})
    stats = bench.get("stats", {})
    impl = extra.get("impl") or bench.get("params", {}).get("impl") or ""
    param = bench.get("param") or bench["name"].partition("[")[2].rstrip("]")
    case = param[: -len(impl) - 1] if impl and param.endswith("-" + impl) else param
    return {
        "name": bench["name"],
        "op": bench["name"].partition("[")[0].removeprefix("test_"),
        "case": case,
        "impl": impl,
        "dtype": _short_dtype(extra.get("dtype")),
        "median_us": extra.get("median_us"),
        "gbps": extra.get("gbps"),
        "extra_info": extra,
        "host_median_s": stats.get("median"),
        "host_iqr_s": stats.get("iqr"),
        "rounds": stats.get("rounds"),
    }


def _short_dtype(name: str | None) -> str | None:
    names = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}
    return names.get(name, name)


def stage_ops(ctx: Context, budget_s: float) -> dict:
    if not has_module("pytest_benchmark"):
        return {"status": "failed", "note": "pytest-benchmark is not installed (carry it as a wheel: DEVELOPING.md)"}
    # (name, STAGEVAR_BENCH_DTYPES, -k expression, reserve s). bf16 first, every shape and batch: the models'
    # dtype. Then fp32 at batch 1 (what the pipeline feeds the ops in most units). torch.compile baselines last and
    # at the 40x40 step only: Inductor compiles each case anew (tens of seconds each). About 150 cases take
    # 0.3-0.5 s each (do_bench's 25 ms warm-up and 100 ms of repeats, 20 pedantic rounds, the sanity check).
    if ctx.dry_run:
        runs = [("fp32-smoke", "fp32", "smoke-area or smoke-37 and not compile", budget_s)]
    else:
        runs = [
            ("bf16", "bf16", "not compile", 0.45 * budget_s),
            ("fp32", "fp32", "not compile and -b1", 0.30 * budget_s),
            ("compile-bf16", "bf16", "compile and 40x40-b1", 0.15 * budget_s),
            ("compile-fp32", "fp32", "compile and 40x40-b1", 0.10 * budget_s),
        ]
    log = ctx.log("ops.log")
    start = time.monotonic()
    result = {"status": "running", "runs": {}, "benchmarks": []}
    ctx.summary["stages"]["ops"] = result
    notes, status = [], "ok"
    for i, (name, dtype, expr, _) in enumerate(runs):
        left = budget_s - (time.monotonic() - start)
        if name == "fp32" and any(b["dtype"] == "fp32" for b in result["benchmarks"]):
            notes.append("fp32: measured by the bench's own dtype cases")
            continue
        json_path = ctx.tmp / f"ops_{name}.json"
        cmd = [ctx.python, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider", "-k", expr]
        cmd += [f"--benchmark-json={json_path}", "--benchmark-columns=median,iqr,rounds", "--benchmark-sort=name"]
        if has_module("pytest_timeout"):
            cmd += ["--timeout=120"]
        res = run_cmd(cmd, log, sub_budget([r[3] for r in runs], i, left), ctx.env(STAGEVAR_BENCH_DTYPES=dtype))
        rows = []
        if json_path.exists():
            try:
                rows = [slim_benchmark(b) for b in json.loads(json_path.read_text())["benchmarks"]]
                for row in rows:  # the copy yardstick states no dtype: it moves the bytes of this run's dtype
                    row["dtype"] = row["dtype"] or dtype
            except (ValueError, KeyError) as err:
                notes.append(f"{name}: unreadable JSON ({err})")
        result["benchmarks"] += rows
        counts = pytest_counts(res.output)
        verdict = "ok" if res.ok else ("timeout" if res.timed_out else f"failed (exit {res.rc})")
        if res.rc == 5:  # pytest: nothing collected
            verdict = f"failed: no benchmark matches -k {expr!r}"
        if not res.started:
            verdict = "not started (no time left)"
        ran = {r["dtype"] for r in rows}
        result["runs"][name] = {
            "verdict": verdict,
            "dtype_asked": dtype,
            "dtypes_measured": sorted(d for d in ran if d),
            "k": expr,
            "seconds": round(res.seconds, 1),
            "counts": counts,
            "benchmarks": len(rows),
        }
        ctx.say(f"  ops {name}: {verdict}, {len(rows)} benchmarks in {res.seconds:.0f} s")
        if verdict != "ok":
            status = "timeout" if res.timed_out or not res.started else "failed"
            notes.append(f"{name} {verdict}")
        ctx.write_summary()
    result["status"] = status
    result["note"] = f"{len(result['benchmarks'])} benchmarks" + (f"; {'; '.join(notes)}" if notes else "")
    return result


# ----------------------------------------------------------------------------------------------- stage: e2e
@dataclass
class E2ERun:
    name: str
    model: str
    batch: int
    schedules: str
    reserve_s: float  # kept for this run when the runs before it are planned
    optional_min_s: float = 0.0  # > 0: run only when this much time is left
    text_encoder: bool = False
    warmup: int = 2
    repeats: int = 5


def e2e_runs(dry_run: bool, graphs: bool = False) -> list[E2ERun]:
    four = "vanilla,paper,fastvar,skip-only"
    if dry_run:
        return [E2ERun("infinity-tiny-b1", "infinity-tiny", 1, four, 0, warmup=0, repeats=1)]
    # With --cuda-graphs every schedule is measured eager and graphed: twice the generations in the same budget, so
    # fewer of them (the graphed warm-up is the capturing generation; the eager one warms the kernels for both).
    warmup, repeats = (1, 3) if graphs else (2, 5)
    return [
        E2ERun("infinity-2b-b1", "infinity-2b", 1, four, 45, warmup=warmup, repeats=repeats),
        E2ERun("infinity-2b-b4", "infinity-2b", 4, four, 40, warmup=warmup, repeats=repeats),
        E2ERun("infinity-8b-b1", "infinity-8b", 1, four, 0, optional_min_s=60, warmup=warmup, repeats=repeats),
        E2ERun(
            "star-d30-b1",
            "star-d30",
            1,
            "vanilla,paper,skip-only",
            0,
            optional_min_s=45,
            warmup=warmup,
            repeats=repeats,
        ),
        # The text encoder (random flan-T5-XL) is timed apart and last: a failure there must not cost a figure.
        E2ERun("infinity-2b-b1-text", "infinity-2b", 1, "vanilla", 0, optional_min_s=40, text_encoder=True, warmup=1),
    ]


def stage_e2e(ctx: Context, budget_s: float) -> dict:
    log = ctx.log("e2e.log")
    start = time.monotonic()
    usage = run_cmd([ctx.python, "-m", "stagevar", "bench", "--help"], log, min(30.0, budget_s), ctx.env())
    graphs_listed = "--cuda-graphs" in usage.output
    use_graphs = graphs_listed and not ctx.dry_run
    result = {"status": "running", "cuda_graphs": use_graphs, "runs": {}}
    status = "ok"
    ctx.summary["stages"]["e2e"] = result
    runs = e2e_runs(ctx.dry_run, use_graphs)
    notes = [f"--cuda-graphs {'passed' if use_graphs else 'listed, not used on cpu' if graphs_listed else 'absent'}"]
    for i, run in enumerate(runs):
        left = budget_s - (time.monotonic() - start)
        if run.optional_min_s and left < run.optional_min_s:
            result["runs"][run.name] = {"verdict": f"skipped: {left:.0f} s left, needs ~{run.optional_min_s:.0f} s"}
            notes.append(f"{run.name} skipped (time)")
            ctx.say(f"  e2e {run.name}: skipped, {left:.0f} s left")
            continue
        json_path = ctx.tmp / f"e2e_{run.name}.json"
        cmd = [ctx.python, "-m", "stagevar", "bench", "--model", run.model, "--batch-size", str(run.batch)]
        cmd += ["--schedules", run.schedules, "--device", ctx.device, "--json", str(json_path)]
        cmd += ["--warmup", str(run.warmup), "--repeats", str(run.repeats)]
        cmd += [] if run.text_encoder else ["--no-text-encoder"]
        cmd += ["--cuda-graphs"] if use_graphs else []
        res = run_cmd(cmd, log, sub_budget([r.reserve_s for r in runs], i, left), ctx.env())
        verdict = "ok" if res.ok else ("timeout" if res.timed_out else f"failed (exit {res.rc})")
        if not res.started:
            verdict = "not started (no time left)"
        shown = [a for a in cmd[1:] if a not in ("--json", str(json_path))]  # the temporary JSON path says nothing
        entry = {"verdict": verdict, "seconds": round(res.seconds, 1), "command": "python3 " + shlex.join(shown)}
        if json_path.exists():
            entry["result"] = json.loads(json_path.read_text())
            entry["table"] = res.output.split("\nwrote ")[0].strip()
        result["runs"][run.name] = entry
        ctx.say(f"  e2e {run.name}: {verdict} in {res.seconds:.0f} s{_totals(entry.get('result'))}")
        if verdict != "ok":
            if not run.optional_min_s:
                status = "timeout" if res.timed_out or not res.started else "failed"
            notes.append(f"{run.name} {verdict}")
        ctx.write_summary()
    result["status"] = status
    result["note"] = "; ".join(notes)
    return result


def _totals(result: dict | None) -> str:
    if not result:
        return ""
    parts = [f"{name} {e['ms']['total']:.0f} ms" for name, e in result["schedules"].items()]
    return ": " + ", ".join(parts)


# Budgets in seconds: (on a GPU, in the CPU rehearsal). The rehearsal takes about a minute on an idle 2-core
# machine (each stage's subprocess imports torch: 3-5 s of it) and three times that when the cores are shared;
# its budgets are ceilings for the second case, so that a busy CI machine does not fail it.
STAGES = [
    Stage("env", 20, 45, stage_env, "versions, device, driver, tools"),
    Stage("build", 140, 45, stage_build, "CUDA extension, sm_90 only, MAX_JOBS=16"),
    Stage("tests", 80, 90, stage_tests, "GPU test tier: pytest -m cuda (ops, Triton kernels, engine)"),
    Stage("sanitizer", 60, 60, stage_sanitizer, "compute-sanitizer memcheck + racecheck on one call per op/backend"),
    Stage("ops", 90, 90, stage_ops, "op microbenchmarks, paper shapes, every backend and baseline, bf16 + fp32", True),
    Stage("e2e", 90, 90, stage_e2e, "stagevar bench: Infinity-2B b1, b4; then 8B b1, STAR b1 if time remains"),
]
GPU_BUDGET_S = sum(s.gpu_budget_s for s in STAGES)  # 480 s: 8 minutes
DRY_BUDGET_S = sum(s.dry_budget_s for s in STAGES)


# ----------------------------------------------------------------------------------------------- driver
def run_stages(ctx: Context, stages: list[Stage]) -> dict:
    """Run ``stages`` in order within ``ctx.deadline``; every stage's failure is caught and recorded.

    Returns the summary (also written to ``ctx.out`` after every stage).
    """
    budgets = [s.dry_budget_s if ctx.dry_run else s.gpu_budget_s for s in stages]
    summary = ctx.summary
    summary.setdefault("stages", {})
    summary["order"] = [s.name for s in stages]
    for stage, budget in zip(stages, budgets):
        summary["stages"][stage.name] = {"status": "pending", "budget_s": budget, "what": stage.what}
    ctx.write_summary()
    for i, stage in enumerate(stages):
        budget = stage_budget(budgets, i, ctx.remaining(), stage.takes_leftover)
        ctx.say(f"== {stage.name} (budget {budget:.0f} s): {stage.what}")
        start = time.monotonic()
        summary["stages"][stage.name] = {"status": "running", "budget_s": round(budget), "what": stage.what}
        ctx.write_summary()
        if budget < MIN_START_S:
            entry = {"status": "skipped", "note": f"skipped: {budget:.0f} s left"}
        else:
            try:
                entry = stage.run(ctx, budget)
            except Exception as err:  # a stage's bug must not cost the stages after it
                ctx.log("driver.log").write(traceback.format_exc())
                entry = {"status": "failed", "note": f"driver error: {type(err).__name__}: {err}"}
        entry.update(budget_s=round(budget), seconds=round(time.monotonic() - start, 1), what=stage.what)
        summary["stages"][stage.name] = entry
        ctx.say(f"   {stage.name}: {entry['status']} in {entry['seconds']:.0f} s: {entry.get('note', '')}")
        ctx.write_summary()
    return summary


def time_table(summary: dict) -> str:
    """Markdown table: each stage's budget, time used, status and note, then the total."""
    lines = ["| stage | budget s | used s | status | note |", "| --- | ---: | ---: | --- | --- |"]
    used = 0.0
    for name in summary.get("order", []):
        s = summary["stages"].get(name, {})
        used += s.get("seconds") or 0.0
        note = str(s.get("note", "")).replace("|", "/").replace("\n", " ")
        lines.append(f"| {name} | {s.get('budget_s', '')} | {s.get('seconds', '')} | {s.get('status')} | {note} |")
    wall = summary.get("wall_s")
    lines.append(f"| total | {summary.get('budget_s', '')} | {wall if wall is not None else round(used, 1)} | | |")
    return "\n".join(lines)


def ops_tables(benchmarks: list[dict]) -> str:
    """One table per op: a row per (case, dtype), a column per implementation, cells in median microseconds.

    Where the same case has a ``copy`` benchmark, a bandwidth-bound implementation's cell also gives its share of
    the copy's bandwidth.
    """
    out = []
    for op in dict.fromkeys(b["op"] for b in benchmarks):
        rows = [b for b in benchmarks if b["op"] == op]
        impls = list(dict.fromkeys(b["impl"] for b in rows))
        keys = list(dict.fromkeys((b["case"], b["dtype"]) for b in rows))
        cells = {(b["case"], b["dtype"], b["impl"]): b for b in rows}
        out += [f"#### {op}", "", "| case | dtype | " + " | ".join(impls) + " |"]
        out.append("| --- | --- |" + " ---: |" * len(impls))
        for case, dtype in keys:
            copy = cells.get((case, dtype, "copy"), {}).get("gbps")
            row = []
            for impl in impls:
                b = cells.get((case, dtype, impl))
                if not b or b.get("median_us") is None:
                    row.append("-")
                    continue
                text = f"{b['median_us']:.1f}"
                if copy and b.get("gbps") and impl != "copy":
                    text += f" ({b['gbps'] / copy:.0%})"
                row.append(text)
            out.append(f"| {case} | {dtype} | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def _graphed_cells(g: dict | None) -> list[str]:
    """The graphed columns of one schedule: total, speedups over the first schedule graphed and eager, capture, peak."""
    if not g:
        return ["-"] * 5
    peak, capture = g.get("peak_memory_bytes"), g.get("capture_ms")
    return [
        f"{g['ms']['total']:.1f}",
        f"{g.get('speedup', 0):.2f}x",
        f"{g.get('speedup_vs_eager', 0):.2f}x",
        "-" if capture is None else f"{capture:.0f}",
        "-" if peak is None else f"{peak / 2**30:.2f}",
    ]


def e2e_table(result: dict) -> str:
    """Markdown table of one ``stagevar bench`` result: a row per schedule, its median total and the rest."""
    entries = result["schedules"]
    extra = sorted(
        {k for e in entries.values() for k, v in e.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        - {"speedup", "op_ms", "peak_memory_bytes"}
    )
    nested = sorted(
        {k for e in entries.values() for k, v in e.items() if isinstance(v, dict) and "total" in v} - {"ms"}
    )
    graphed = any("graphed" in e for e in entries.values())  # `stagevar bench --cuda-graphs`
    head = ["schedule", "total ms", "speedup", "in ops ms", "peak GiB"] + [f"{k} total ms" for k in nested]
    if graphed:
        head += ["graphed ms", "graphed speedup", "graphed vs eager 1st", "capture ms", "graphed peak GiB"]
    head += extra
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for name, e in entries.items():
        peak = e.get("peak_memory_bytes")
        row = [name, f"{e['ms']['total']:.1f}", f"{e.get('speedup', 0):.2f}x", f"{e.get('op_ms', 0):.2f}"]
        row.append(f"{peak / 2**30:.2f}" if peak is not None else "-")
        row += [f"{e[k]['total']:.1f}" if k in e else "-" for k in nested]
        if graphed:
            row += _graphed_cells(e.get("graphed"))
        row += [f"{e[k]:.4g}" if k in e else "-" for k in extra]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_markdown(summary: dict) -> str:
    """summary.md: the header (device, versions, command), where the time went, the op and end-to-end tables."""
    env = summary.get("env", {})
    device = env.get("device") or ("CPU rehearsal" if summary.get("dry_run") else "device unknown")
    date = str(summary.get("started_utc") or env.get("date_utc") or "")[:10]
    lines = [f"### {date}, {device}: `{summary.get('command', 'bash scripts/gpu_check.sh')}`", ""]
    versions = [
        f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')})",
        f"triton {env.get('triton')}",
        f"driver/GPU: {env.get('nvidia_smi')}",
        f"nvcc: {env.get('nvcc')}",
        f"commit {env.get('commit')}",
    ]
    lines += ["; ".join(versions) + f"; started {summary.get('started_utc')}, status **{summary.get('status')}**.", ""]
    lines += ["Where the time went (seconds):", "", time_table(summary), ""]
    stages = summary.get("stages", {})
    benchmarks = stages.get("ops", {}).get("benchmarks") or []
    if benchmarks:
        timing = "host wall-clock medians (CPU)" if summary.get("dry_run") else "device-event medians (do_bench)"
        lines += [f"Op microbenchmarks, µs ({timing}; % = share of a device copy's bandwidth):", ""]
        lines += [ops_tables(benchmarks), ""]
    for name, run in (stages.get("e2e", {}).get("runs") or {}).items():
        if "result" not in run:
            lines += [f"End to end, {name}: {run.get('verdict')}", ""]
            continue
        r = run["result"]
        lines += [
            f"End to end, {r['model']} batch {r['batch']}, {r['device']}, median of {r['repeats']} after "
            f"{r['warmup']} warm-up (`{run['command']}`):",
            "",
            e2e_table(r),
            "",
        ]
        if run.get("table"):
            lines += ["```", run["table"], "```", ""]
    return "\n".join(lines)


def check_out_dir(out: Path) -> list[str]:
    """Problems with ``out`` as the device tool brings it back (more than 8 files, files over 16 MiB)."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = [f"{len(files)} files (the tool brings back 8)"] if len(files) > len(OUT_FILES) else []
    problems += [f"{p.name}: over 16 MiB" for p in files if p.stat().st_size >= 16 * 2**20]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the CPU rehearsal: every stage on tiny shapes")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu_results"), help="default: $OUT")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all stages (default 480 on a GPU)")
    parser.add_argument("--only", default=None, help="comma-separated stages to run (env always runs)")
    parser.add_argument("--payload", action="store_true", help="(internal) the program compute-sanitizer runs")
    parser.add_argument("--device", default="cuda", help="--payload: the device")
    parser.add_argument("--size", default="small", choices=["small", "all"], help="--payload: sizes")
    parser.add_argument("--racecheck", action="store_true", help="--payload: the lighter racecheck workload")
    args = parser.parse_args(argv)
    if args.payload:
        return payload(args.device, args.size, args.racecheck)

    names = [s.name for s in STAGES]
    only = [n.strip() for n in args.only.split(",")] if args.only else names
    unknown = sorted(set(only) - set(names))
    if unknown:
        parser.error(f"--only: unknown stages {unknown}; expected some of {names}")
    stages = [s for s in STAGES if s.name in only or s.name == "env"]
    dry_run = args.dry_run or not _gpu_present()
    budget = args.budget or sum(s.dry_budget_s if dry_run else s.gpu_budget_s for s in stages)
    if budget <= 0:
        parser.error("--budget: must be positive")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUT_FILES:  # a fresh report: nothing of an earlier run is mistaken for this one's
        (out / name).unlink(missing_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = Context(out=out, tmp=Path(tmp), dry_run=dry_run, python=sys.executable, deadline=start + budget)
        ctx.summary.update(
            command=shlex.join(["bash", "scripts/gpu_check.sh", *(sys.argv[1:] if argv is None else argv)]),
            dry_run=dry_run,
            mode="cpu rehearsal" if dry_run else "gpu",
            budget_s=round(budget),
            started_utc=_utc_now(),
            status="running",
        )
        if dry_run and not args.dry_run:
            ctx.say("no GPU found (nvidia-smi lists none): running the CPU rehearsal instead")

        def interrupted(signum, _frame):  # the device tool's limit: leave a summary that says so
            ctx.summary["status"] = f"interrupted by signal {signum}"
            ctx.summary["wall_s"] = round(time.monotonic() - start, 1)
            ctx.write_summary()
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, interrupted)
        ctx.say(f"gpu_check: {'CPU rehearsal' if dry_run else 'GPU'}, budget {budget:.0f} s, out {out}")
        summary = run_stages(ctx, stages)
        statuses = [summary["stages"][s.name]["status"] for s in stages]
        summary["status"] = "ok" if all(s in ("ok", "skipped") for s in statuses) else "incomplete"
        summary["wall_s"] = round(time.monotonic() - start, 1)
        summary["finished_utc"] = _utc_now()
        problems = check_out_dir(out)
        if problems:
            summary["out_problems"] = problems
        ctx.write_summary()
    print("\n" + (out / "summary.md").read_text(), flush=True)
    print("Where the time went (seconds):\n" + time_table(summary), flush=True)  # last: the reply shows the tail
    print(f"gpu_check: {summary['status']} in {summary['wall_s']:.0f} s; results in {out}", flush=True)
    return 0 if summary["status"] == "ok" and not problems else 1


def _gpu_present() -> bool:
    """True when nvidia-smi lists a GPU, or else torch in a subprocess sees one (the driver holds no CUDA context)."""
    if shutil.which("nvidia-smi"):
        return bool(_first_line(["nvidia-smi", "-L"], r"^GPU \d"))
    probe = "import torch; print('CUDA', torch.cuda.is_available())"
    return _first_line([sys.executable, "-c", probe], r"^CUDA ") == "CUDA True"


if __name__ == "__main__":
    sys.exit(main())
