"""The benchmark harness: its text table (eager, and eager + graphed) and the graphed measurement's bookkeeping."""

import pytest

from stagevar import benchmark

TABLE_EAGER = """\
infinity-tiny | batch 1 | CPU | 2026-12-03 | median of 3 after 1 warm-up | text encoder 3.25 ms (apart)
         step  grid  tokens  vanilla ms  paper ms
            0   1x1       1        1.00      1.00
            1   2x2       4        5.00      5.00
            2   4x4      16       20.00   skipped
       decode                      2.00      2.00
        total                     30.00     12.00
      speedup                     1.00x     2.50x
       in ops                      0.00      0.50
launches/step                        66        40
     peak GiB                      1.00      0.50
baseline (vanilla, upstream data flow): total 45.00 ms, 80 launches/step; vanilla is 1.50x faster"""


def _entry(total: float, steps: list[float], op_ms: float, launches: float, peak: int) -> dict:
    ms = {f"scale{k}": v for k, v in enumerate(steps)} | {"decode": 2.0, "total": total}
    return {"ms": ms, "op_ms": op_ms, "launches_per_step": launches, "peak_memory_bytes": peak}


def _result(graphed: bool) -> dict:
    """A result of :func:`benchmark.run`'s shape: vanilla and paper on three scales, optionally graphed too."""
    schedules = {
        "vanilla": _entry(30.0, [1.0, 5.0, 20.0], 0.0, 66, 2**30),
        "paper": _entry(12.0, [1.0, 5.0], 0.5, 40, 2**29),
    }
    if graphed:
        schedules["vanilla"]["graphed"] = _entry(20.0, [0.5, 3.5, 14.0], 0.0, 6, 2**30 + 2**28) | {"capture_ms": 900.0}
        schedules["paper"]["graphed"] = _entry(5.0, [0.5, 2.5], 0.0, 5, 2**29 + 2**27) | {"capture_ms": 700.5}
    for entry in schedules.values():
        entry["speedup"] = 30.0 / entry["ms"]["total"]
    return {
        "model": "infinity-tiny",
        "batch": 1,
        "device": "CPU",
        "date": "2026-12-03",
        "repeats": 3,
        "warmup": 1,
        "scales": [[1, 1], [2, 2], [4, 4]],
        "schedules": schedules,
        "baseline": {"name": "vanilla, upstream data flow", "ms": {"total": 45.0}, "launches_per_step": 80},
        "text_encoder_ms": 3.25,
    }


def test_eager_table_is_unchanged():
    assert benchmark.table(_result(graphed=False)) == TABLE_EAGER


def _cells(text: str, label: str) -> list[str]:
    """The cells after ``label`` on its row (labels may hold spaces)."""
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    return line.strip()[len(label) :].split()


def test_graphed_table_has_two_columns_per_schedule():
    text = benchmark.table(_result(graphed=True))
    head, columns = text.splitlines()[:2]
    assert "eager and CUDA graphs" in head
    assert columns.split()[3:] == ["vanilla", "eager", "ms", "vanilla", "graphed", "ms"] + [
        "paper",
        "eager",
        "ms",
        "paper",
        "graphed",
        "ms",
    ]
    assert _cells(text, "2") == ["4x4", "16", "20.00", "14.00", "skipped", "skipped"]
    assert _cells(text, "total") == ["30.00", "20.00", "12.00", "5.00"]
    assert _cells(text, "speedup vs vanilla eager") == ["1.00x", "1.50x", "2.50x", "6.00x"]
    assert _cells(text, "speedup vs vanilla graphed") == ["0.67x", "1.00x", "1.67x", "4.00x"]
    assert _cells(text, "capture ms") == ["-", "900.00", "-", "700.50"]
    assert _cells(text, "in ops") == ["0.00", "-", "0.50", "-"]  # replay runs no Python: ops timed eagerly only
    assert _cells(text, "launches/step") == ["66", "6", "40", "5"]
    assert _cells(text, "peak GiB") == ["1.00", "1.25", "0.50", "0.62"]
    assert text.splitlines()[-1].endswith("vanilla is 1.50x faster eager, 2.25x graphed")


def test_a_capture_that_did_not_happen_is_a_dash():
    result = _result(graphed=True)
    result["schedules"]["paper"]["graphed"]["capture_ms"] = None
    assert _cells(benchmark.table(result), "capture ms") == ["-", "900.00", "-", "-"]


@pytest.fixture
def graphed_runs(monkeypatch):
    """``benchmark.run`` on CPU with a graphed mode emulated over the eager loop: a graphed runner reports a
    ``capture`` span on its first generation only, as the graph engine does; the graph release is recorded."""
    real = benchmark._runner
    log = {"released": 0, "graphed_calls": 0}

    def runner(name, family, backend, cuda_graphs=False):
        eager = real(name, family, backend)
        if not cuda_graphs:
            return eager
        captured = []

        def run(session, timer):
            log["graphed_calls"] += 1
            if not captured and timer is not None:
                timer.start("capture")
                timer.stop("capture")
            captured.append(True)
            return eager(session, timer)

        return run

    def release(model):
        log["released"] += 1

    monkeypatch.setattr(benchmark, "_runner", runner)
    monkeypatch.setattr(benchmark, "_release_graphs", release)
    return log


def test_graphed_measurement(graphed_runs):
    ticks = []
    result = benchmark.run(
        "infinity-tiny",
        ["vanilla", "paper"],
        warmup=0,
        repeats=1,
        text_encoder=False,
        cuda_graphs=True,
        progress=ticks.append,
    )
    assert result["cuda_graphs"] is True and graphed_runs["released"] == 2
    assert len(ticks) == 2 * benchmark.generations(0, 1, cuda_graphs=True) == 2 * 3
    # warm-up 0 still gives the graphed mode its capturing generation, outside the timed ones
    assert graphed_runs["graphed_calls"] == 2 * (1 + 1 + 1)  # capture, one timed, one counted
    for entry in result["schedules"].values():
        graphed = entry["graphed"]
        assert set(entry) - {"graphed"} <= set(graphed) and graphed["capture_ms"] >= 0.0
        assert "capture" not in graphed["ms"] and "capture" not in entry["ms"]
        want = result["schedules"]["vanilla"]["graphed"]["ms"]["total"] / graphed["ms"]["total"]
        assert graphed["speedup"] == pytest.approx(want)
        want = result["schedules"]["vanilla"]["ms"]["total"] / graphed["ms"]["total"]
        assert graphed["speedup_vs_eager"] == pytest.approx(want)
    assert "paper graphed ms" in benchmark.table(result)


def test_eager_measurement_has_no_graphed_entries(graphed_runs):
    result = benchmark.run("infinity-tiny", ["vanilla"], warmup=0, repeats=1, text_encoder=False)
    assert result["cuda_graphs"] is False and "graphed" not in result["schedules"]["vanilla"]
    assert graphed_runs == {"released": 0, "graphed_calls": 0}


def test_graphed_measurement_on_the_real_engine_with_the_tape_stand_in(monkeypatch):
    # The whole harness over the graph engine itself (the tape stands in for CUDA graphs on a CPU): every schedule and
    # the FastVAR peer capture once, report their capture time apart, and release their graphs before the next one.
    from stagevar.engine import graphs
    from stagevar.engine.tape import TapeFactory

    held = []
    release = benchmark._release_graphs

    def spy(model):
        before = len(graphs.captured_keys(model))
        release(model)
        held.append((before, len(graphs.captured_keys(model))))

    monkeypatch.setattr(benchmark, "_release_graphs", spy)
    factory = TapeFactory()
    with graphs.use_factory(factory):
        result = benchmark.run(
            "infinity-tiny", ["vanilla", "paper", "fastvar"], warmup=0, repeats=2, text_encoder=False, cuda_graphs=True
        )
    steps = {"vanilla": 7, "paper": 5, "fastvar": 5}  # the tiny model's 0.06M schedule: 7 scales, 2 skipped
    assert len(factory.graphs) == sum(steps.values())  # one capture per computed step, none in the timed runs
    assert held == [(1, 0)] * 3  # one key per schedule, dropped before the next schedule is measured
    for name, entry in result["schedules"].items():
        graphed = entry["graphed"]
        assert graphed["capture_ms"] > 0.0 and "capture" not in graphed["ms"]
        assert sorted(k for k in graphed["ms"] if k.startswith("scale")) == [f"scale{k}" for k in range(steps[name])]
    assert "capture ms" in benchmark.table(result)
