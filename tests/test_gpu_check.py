"""The GPU check's driver (scripts/gpu_check.py) on a CPU: budgets, the process runner, stage isolation, the summary
and its tables, the sanitizer's payload, and the command line in a subprocess. ``.ci/run`` runs the whole CPU
rehearsal (``--dry-run``, every stage) besides these."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up while the class is built
_spec.loader.exec_module(gpu_check)


def _context(tmp_path, budget_s=60.0, dry_run=True):
    out = tmp_path / "out"
    out.mkdir()
    return gpu_check.Context(
        out=out,
        tmp=tmp_path,
        dry_run=dry_run,
        python=sys.executable,
        deadline=time.monotonic() + budget_s,
        echo=False,
    )


def test_each_stage_gets_its_budget_and_the_last_one_what_is_left():
    budgets = [10.0, 20.0, 30.0]
    assert gpu_check.stage_budget(budgets, 0, 60.0) == 10.0
    # the first stage overran by 5 s: the second gives that up, the third keeps its 30 s
    assert gpu_check.stage_budget(budgets, 1, 45.0) == 15.0
    # the first two saved 25 s: all of it goes to the last stage
    assert gpu_check.stage_budget(budgets, 2, 55.0) == 55.0
    assert gpu_check.stage_budget(budgets, 1, 10.0) == 0.0
    # a stage that takes the leftover: the first stage saved 8 s, the second may use them
    assert gpu_check.stage_budget(budgets, 1, 58.0, takes_leftover=True) == 28.0
    assert [s.name for s in gpu_check.STAGES if s.takes_leftover] == ["ops"]


def test_sub_runs_keep_the_reserves_of_the_runs_after_them():
    reserves = [30.0, 20.0, 0.0]
    assert gpu_check.sub_budget(reserves, 0, 90.0) == 70.0
    assert gpu_check.sub_budget(reserves, 1, 50.0) == 50.0
    assert gpu_check.sub_budget(reserves, 0, 15.0) == 0.0


def test_the_gpu_budgets_fit_the_lease():
    # eight minutes of stages leave room, in 15 minutes of device time, for the machine's start and the transfers
    assert gpu_check.GPU_BUDGET_S <= 480
    assert [s.name for s in gpu_check.STAGES] == ["env", "build", "tests", "sanitizer", "ops", "e2e"]
    assert len(gpu_check.OUT_FILES) <= 8


def test_run_cmd_interrupts_at_the_budget_and_keeps_the_partial_output(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "MIN_START_S", 0.1)
    child = (
        "import time\nprint('started', flush=True)\ntry:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('partial results written', flush=True)\n    raise SystemExit(3)\n"
    )
    log = gpu_check.LogFile(tmp_path / "x.log")
    res = gpu_check.run_cmd([sys.executable, "-c", child], log, budget_s=2.0, grace_s=20.0)
    assert res.timed_out and not res.ok and res.rc == 3
    assert "partial results written" in res.output
    assert "partial results written" in (tmp_path / "x.log").read_text()
    assert res.seconds < 15.0


def test_run_cmd_kills_a_process_that_ignores_sigint(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "MIN_START_S", 0.1)
    child = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    res = gpu_check.run_cmd([sys.executable, "-c", child], gpu_check.LogFile(tmp_path / "x.log"), 2.0, grace_s=1.0)
    assert res.timed_out and res.rc == -9
    assert res.seconds < 15.0


def test_run_cmd_does_not_start_without_time_and_reports_exit_codes(tmp_path):
    log = gpu_check.LogFile(tmp_path / "x.log")
    res = gpu_check.run_cmd([sys.executable, "-c", "print(1)"], log, budget_s=1.0)
    assert not res.started and not res.ok and "not started" in (tmp_path / "x.log").read_text()
    res = gpu_check.run_cmd([sys.executable, "-c", "raise SystemExit(4)"], log, budget_s=30.0)
    assert res.started and res.rc == 4 and not res.ok and not res.timed_out


def test_log_files_stay_under_the_transfer_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "LOG_LIMIT_BYTES", 100)
    log = gpu_check.LogFile(tmp_path / "x.log")
    for _ in range(10):
        log.write("x" * 30 + "\n")
    text = (tmp_path / "x.log").read_text()
    assert text.endswith("[log truncated at 15 MiB]\n") and len(text) < 140


def test_pytest_counts_reads_the_summary_line():
    out = (
        "....\nFAILED tests/a.py::test_x - AssertionError\n== 1 failed, 30 passed, 274 skipped, 2 warnings in 6.26s =="
    )
    assert gpu_check.pytest_counts(out) == {"failed": 1, "passed": 30, "skipped": 274, "warnings": 2}
    assert gpu_check.failure_lines(out) == ["FAILED tests/a.py::test_x - AssertionError"]
    assert gpu_check.pytest_counts("3 passed, 1 error in 2.00s") == {"passed": 3, "errors": 1}
    assert gpu_check.pytest_counts("KeyboardInterrupt\n") == {}


def test_a_failing_stage_is_recorded_and_the_next_stages_still_run(tmp_path):
    ctx = _context(tmp_path)
    seen = {}

    def ok(ctx, budget):
        return {"status": "ok", "note": f"had {budget:.0f} s"}

    def broken(ctx, budget):
        raise RuntimeError("no such tool")

    def last(ctx, budget):  # the summary on disk already says what the stages before it did
        seen["on_disk"] = json.loads((ctx.out / "summary.json").read_text())["stages"]
        return {"status": "ok", "note": "done"}

    stages = [
        gpu_check.Stage("first", 10, 10, ok, "an ok stage"),
        gpu_check.Stage("second", 10, 10, broken, "a stage with a bug"),
        gpu_check.Stage("third", 10, 10, last, "the last stage"),
    ]
    summary = gpu_check.run_stages(ctx, stages)
    assert [summary["stages"][n]["status"] for n in ("first", "second", "third")] == ["ok", "failed", "ok"]
    assert "RuntimeError: no such tool" in summary["stages"]["second"]["note"]
    assert seen["on_disk"]["first"]["status"] == "ok" and seen["on_disk"]["second"]["status"] == "failed"
    assert summary["stages"]["first"]["budget_s"] == 10
    assert summary["stages"]["third"]["budget_s"] >= 35  # the last stage gets what the others left
    on_disk = json.loads((ctx.out / "summary.json").read_text())
    assert on_disk["stages"]["third"]["note"] == "done"
    md = (ctx.out / "summary.md").read_text()
    assert "| second |" in md and "RuntimeError: no such tool" in md
    assert "Traceback" in (ctx.out / "driver.log").read_text()
    assert gpu_check.check_out_dir(ctx.out) == []


def test_stages_without_time_are_skipped(tmp_path):
    ctx = _context(tmp_path, budget_s=12.0)
    calls = []

    def stage(ctx, budget):
        calls.append(budget)
        return {"status": "ok"}

    stages = [gpu_check.Stage("a", 10, 10, stage, "a"), gpu_check.Stage("b", 10, 10, stage, "b")]
    summary = gpu_check.run_stages(ctx, stages)
    assert summary["stages"]["a"]["status"] == "skipped" and "left" in summary["stages"]["a"]["note"]
    assert summary["stages"]["b"]["status"] == "ok" and len(calls) == 1


def _bench(name, impl, dtype, median_us, gbps=None):
    extra = {"impl": impl, "median_us": median_us, **({"dtype": dtype} if dtype else {})}
    if gbps is not None:
        extra["gbps"] = gbps
    return {"name": name, "param": name.partition("[")[2][:-1], "extra_info": extra, "stats": {"median": 1e-3}}


def test_op_tables_pivot_implementations_and_give_the_share_of_copy_bandwidth():
    raw = [
        _bench("test_restore_merge[inf2b-40x40-b1-area-copy]", "copy", None, 10.0, gbps=4000.0),
        _bench("test_restore_merge[inf2b-40x40-b1-area-backend-cuda]", "backend-cuda", "torch.bfloat16", 20.0, 3000.0),
        _bench("test_project_and_sample[inf2b-40x40-b1-eager]", "eager", "torch.float32", 55.5),
    ]
    rows = [gpu_check.slim_benchmark(b) for b in raw]
    assert rows[1]["case"] == "inf2b-40x40-b1-area" and rows[1]["op"] == "restore_merge" and rows[1]["dtype"] == "bf16"
    rows[0]["dtype"] = "bf16"  # what stage_ops fills in for the copy
    md = gpu_check.ops_tables(rows)
    assert "#### restore_merge" in md and "| case | dtype | copy | backend-cuda |" in md
    assert "| inf2b-40x40-b1-area | bf16 | 10.0 | 20.0 (75%) |" in md
    assert "| inf2b-40x40-b1 | fp32 | 55.5 |" in md


def test_e2e_table_shows_every_schedule_and_columns_the_harness_adds():
    result = {
        "schedules": {
            "vanilla": {"ms": {"total": 1000.0}, "speedup": 1.0, "op_ms": 0.0, "upstream": {"total": 1400.0}},
            "paper": {"ms": {"total": 250.0}, "speedup": 4.0, "op_ms": 3.5, "peak_memory_bytes": 2**31},
        }
    }
    md = gpu_check.e2e_table(result)
    assert md.splitlines()[0] == "| schedule | total ms | speedup | in ops ms | peak GiB | upstream total ms |"
    assert "| vanilla | 1000.0 | 1.00x | 0.00 | - | 1400.0 |" in md
    assert "| paper | 250.0 | 4.00x | 3.50 | 2.00 | - |" in md


def test_e2e_table_has_the_graphed_columns_of_bench_cuda_graphs():
    graphed = {"ms": {"total": 500.0}, "speedup": 1.0, "speedup_vs_eager": 2.0, "capture_ms": 1234.4}
    result = {
        "schedules": {
            "vanilla": {"ms": {"total": 1000.0}, "speedup": 1.0, "op_ms": 0.0, "graphed": graphed},
            "paper": {
                "ms": {"total": 250.0},
                "speedup": 4.0,
                "op_ms": 3.5,
                "graphed": {
                    "ms": {"total": 125.0},
                    "speedup": 4.0,
                    "speedup_vs_eager": 8.0,
                    "peak_memory_bytes": 2**30,
                },
            },
        }
    }
    md = gpu_check.e2e_table(result)
    head = md.splitlines()[0]
    assert head.endswith("| graphed ms | graphed speedup | graphed vs eager 1st | capture ms | graphed peak GiB |")
    assert "| vanilla | 1000.0 | 1.00x | 0.00 | - | 500.0 | 1.00x | 2.00x | 1234 | - |" in md
    assert "| paper | 250.0 | 4.00x | 3.50 | - | 125.0 | 4.00x | 8.00x | - | 1.00 |" in md


@pytest.mark.slow
def test_sanitizer_payload_runs_every_op_and_backend_on_cpu(capsys):
    assert gpu_check.payload("cpu", "small", racecheck=False) == 0
    assert "PAYLOAD ok: 20 calls, backends ['reference', 'triton']" in capsys.readouterr().out
    assert gpu_check.payload("cpu", "small", racecheck=True) == 0
    assert "PAYLOAD ok: 6 calls, backends ['triton']" in capsys.readouterr().out


# A stand-in for the device's python3 and compute-sanitizer: it records every command and answers as the real
# programs would on a GPU machine, so the GPU path of every stage runs here (commands, parsing, summary).
FAKE_PYTHON = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open({record!r}, "a") as f:
    names = ("TORCH_CUDA_ARCH_LIST", "STAGEVAR_BENCH_DTYPES", "PYTORCH_NO_CUDA_MEMORY_CACHING")
    env = {{k: os.environ.get(k) for k in names}}
    f.write(json.dumps({{"args": args, "env": env}}) + "\\n")
if args[0] == "-c" and "ENV " in args[1]:
    print("ENV " + json.dumps({{"torch": "2.11.0", "torch_cuda": "13.0", "triton": "3.6.0", "device": "FAKE H200"}}))
elif args[0] == "-c" and "EXT " in args[1]:
    print("EXT " + json.dumps({{"has_ext": True, "backends": ["reference", "triton", "cuda"]}}))
elif args[0] == "setup.py":
    print("building the CUDA extension")
elif args[:2] == ["-m", "pytest"] and args[2] == "bench":
    path = [a for a in args if a.startswith("--benchmark-json=")][0].split("=", 1)[1]
    dtype = {{"bf16": "torch.bfloat16", "fp32": "torch.float32"}}[os.environ["STAGEVAR_BENCH_DTYPES"]]
    impl = "compile" if args[args.index("-k") + 1].startswith("compile") else "backend-cuda"
    bench = {{"name": f"test_project_and_sample[inf2b-40x40-b1-{{impl}}]", "param": f"inf2b-40x40-b1-{{impl}}",
             "extra_info": {{"impl": impl, "dtype": dtype, "median_us": 12.5}}, "stats": {{"median": 1e-5}}}}
    json.dump({{"benchmarks": [bench]}}, open(path, "w"))
    print("1 passed, 40 deselected in 1.00s")
elif args[:2] == ["-m", "pytest"]:
    print("270 passed, 6 skipped in 30.00s")
elif args[:3] == ["-m", "stagevar", "bench"] and "--help" in args:
    print("usage: stagevar bench [--cuda-graphs] [--json JSON]")
elif args[:3] == ["-m", "stagevar", "bench"]:
    model = args[args.index("--model") + 1]
    names = args[args.index("--schedules") + 1].split(",")
    result = {{"model": model, "batch": int(args[args.index("--batch-size") + 1]), "device": "FAKE H200",
              "repeats": 5, "warmup": 2, "schedules": {{n: {{"ms": {{"total": 100.0 / (i + 1)}}, "speedup": i + 1.0,
              "op_ms": 0.5}} for i, n in enumerate(names)}}}}
    json.dump(result, open(args[args.index("--json") + 1], "w"))
    print(f"{{model}} | table")
    print("wrote " + args[args.index("--json") + 1])
else:
    sys.exit(f"fake python: unexpected {{args}}")
"""


def _fake_gpu_machine(tmp_path, monkeypatch, sanitizer_exit=0):
    record = tmp_path / "calls.jsonl"
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON.format(python=sys.executable, record=str(record)))
    sanitizer = tmp_path / "compute-sanitizer"
    sanitizer.write_text(f"#!/bin/sh\necho '========= ERROR SUMMARY: {sanitizer_exit} errors'\nexit {sanitizer_exit}\n")
    for f in (python, sanitizer):
        f.chmod(0o755)
    monkeypatch.setenv("COMPUTE_SANITIZER", str(sanitizer))
    ctx = _context(tmp_path, budget_s=gpu_check.GPU_BUDGET_S, dry_run=False)
    ctx.python = str(python)
    return ctx, record


def test_gpu_path_of_every_stage_on_a_fake_machine(tmp_path, monkeypatch):
    ctx, record = _fake_gpu_machine(tmp_path, monkeypatch)
    summary = gpu_check.run_stages(ctx, gpu_check.STAGES)
    stages = summary["stages"]
    assert {n: s["status"] for n, s in stages.items()} == dict.fromkeys(summary["order"], "ok")
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    build = next(c for c in calls if c["args"][0] == "setup.py")
    assert build["args"] == ["setup.py", "build_ext", "--inplace"] and build["env"]["TORCH_CUDA_ARCH_LIST"] == "9.0"
    tests = next(c for c in calls if c["args"][:2] == ["-m", "pytest"] and c["args"][2] != "bench")
    assert tests["args"][tests["args"].index("-m", 1) + 1] == "cuda" and "tests" in tests["args"]
    assert stages["tests"]["counts"] == {"passed": 270, "skipped": 6}
    assert stages["sanitizer"]["note"] == "memcheck ok; racecheck ok"
    # bf16 first, then fp32, then the compile baselines; each dtype reaches the bench through the environment
    ops = [
        (c["env"]["STAGEVAR_BENCH_DTYPES"], c["args"][c["args"].index("-k") + 1])
        for c in calls
        if c["args"][:3] == ["-m", "pytest", "bench"]
    ]
    assert [d for d, _ in ops] == ["bf16", "fp32", "bf16", "fp32"] and "compile" in ops[2][1]
    assert [b["dtype"] for b in stages["ops"]["benchmarks"]] == ["bf16", "fp32", "bf16", "fp32"]
    runs = [c["args"] for c in calls if c["args"][:3] == ["-m", "stagevar", "bench"] and "--help" not in c["args"]]
    assert [r[r.index("--model") + 1] for r in runs] == [
        "infinity-2b",
        "infinity-2b",
        "infinity-8b",
        "star-d30",
        "infinity-2b",
    ]
    assert all("--cuda-graphs" in r and r[r.index("--device") + 1] == "cuda" for r in runs)
    # eager and graphed per schedule: fewer generations each, so that both fit the budget
    assert all((r[r.index("--warmup") + 1], r[r.index("--repeats") + 1]) == ("1", "3") for r in runs[:-1])
    assert "--no-text-encoder" not in runs[-1] and all("--no-text-encoder" in r for r in runs[:-1])
    md = (ctx.out / "summary.md").read_text()
    assert (
        "FAKE H200" in md
        and "| inf2b-40x40-b1 | bf16 | 12.5 | 12.5 |" in md
        and "| case | dtype | backend-cuda | compile |" in md
    )
    assert "End to end, infinity-2b batch 4" in md and "| paper | 50.0 | 2.00x |" in md


def test_optional_e2e_runs_start_only_when_their_time_is_left(tmp_path, monkeypatch):
    ctx, record = _fake_gpu_machine(tmp_path, monkeypatch)
    ctx.summary["stages"] = {}
    result = gpu_check.stage_e2e(ctx, 50.0)
    runs = result["runs"]
    assert runs["infinity-2b-b1"]["verdict"] == "ok" and runs["infinity-2b-b4"]["verdict"] == "ok"
    assert runs["infinity-8b-b1"]["verdict"].startswith("skipped") and runs["star-d30-b1"]["verdict"] == "ok"
    assert result["status"] == "ok" and "infinity-8b-b1 skipped (time)" in result["note"]


def test_sanitizer_reports_fail_the_stage(tmp_path, monkeypatch):
    ctx, _ = _fake_gpu_machine(tmp_path, monkeypatch, sanitizer_exit=1)
    result = gpu_check.stage_sanitizer(ctx, 60.0)
    assert result["status"] == "failed" and result["note"] == "memcheck failed (exit 1); racecheck failed (exit 1)"
    assert result["tools"]["memcheck"]["summary"] == ["========= ERROR SUMMARY: 1 errors"]


def test_only_names_known_stages():
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "nope", "--dry-run"])


@pytest.mark.slow
def test_dry_run_command_line_writes_the_summary(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run", "--only", "env", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "cpu rehearsal" and summary["status"] == "ok"
    assert summary["order"] == ["env"] and summary["stages"]["env"]["status"] == "ok"
    assert summary["env"]["torch"] and summary["env"]["python"] and summary["env"]["date_utc"]
    lines = proc.stdout.strip().splitlines()  # where the time went is printed last: the device tool shows the tail
    assert (
        lines[-1].startswith("gpu_check: ok") and lines[-2].startswith("| total |") and lines[-3].startswith("| env |")
    )
    assert sorted(p.name for p in out.iterdir()) == ["driver.log", "summary.json", "summary.md"]
