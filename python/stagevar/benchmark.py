"""End-to-end latency harness: schedules (and the peers) side by side on one model, per scale step, VAE decode
included.

Each schedule runs ``warmup`` untimed generations, then ``repeats`` timed ones (device events on CUDA,
``perf_counter`` on CPU); the table shows medians. ``total`` spans the whole generation from the session's
creation (text projections) to the decoded image; ``ops`` sums the time inside the two stagevar ops. The text
encoder is timed apart (random flan-T5-XL / CLIP weights, only when ``transformers`` is installed).

With ``cuda_graphs`` every schedule is measured twice, eager and graphed (the computed scale steps replayed as CUDA
graphs). The graphed warm-up has at least one generation, the one that captures; its capture time is reported apart
(``capture_ms``), so the graphed medians are steady state. Peak memory is measured per schedule and mode.
"""

from __future__ import annotations

import datetime
import functools
import json
import platform
import resource
import sys

import torch

from . import peers, zoo
from .engine import count_launches, graphs
from .families import family
from .schedule import resolve
from .timing import medians, timer_for


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _runner(name: str, family_name: str, backend: str | None, cuda_graphs: bool = False):
    """``run(session, timer)`` for a schedule (preset or JSON) or a peer of :data:`stagevar.peers.PEERS`."""
    if name in peers.PEERS:
        run = peers.runner(name, family_name)
    else:
        run = peers.schedule_runner(resolve(name, family_name))
    return lambda session, timer: run(session, backend=backend, timer=timer, cuda_graphs=cuda_graphs)


def _text_encoder_ms(family_name: str, batch: int, device: torch.device, repeats: int) -> float | None:
    """Median time of the text encoder with random weights of the real shape (None without transformers)."""
    try:
        import transformers
    except ImportError:
        return None
    with torch.device(device):
        enc, tokens, rows_per_prompt = family(family_name).random_text_encoder(transformers)
    enc = enc.to(torch.float16 if device.type == "cuda" else torch.float32).eval()
    ids = torch.randint(0, 1000, (rows_per_prompt * batch, tokens), device=device)
    runs = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            timer = timer_for(device)
            timer.start("text")
            enc(input_ids=ids)
            timer.stop("text")
            if i:
                runs.append(timer.finish())
    return medians(runs)["text"]


def generations(warmup: int, repeats: int, cuda_graphs: bool = False) -> int:
    """Generations :func:`run` makes per schedule with ``progress`` calls (warm-up and timed, both modes)."""
    return warmup + repeats + (max(1, warmup) + repeats if cuda_graphs else 0)


def run(
    model: str,
    schedules: list[str],
    *,
    batch: int = 1,
    device: str = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    seed: int = 0,
    backend: str | None = None,
    h_div_w: float = 1.0,
    pn: str = "1M",
    text_encoder: bool | None = None,
    cuda_graphs: bool = False,
    progress=None,
) -> dict:
    """Benchmark ``schedules`` on ``model`` (a :mod:`stagevar.zoo` name); returns a JSON-ready dict.

    ``cuda_graphs``: measure every schedule graphed too (a ``graphed`` sub-dict per schedule with the same fields
    plus ``capture_ms``, ``speedup`` over the first schedule graphed and ``speedup_vs_eager`` over it eager).
    ``progress(schedule_name)`` is called after each generation (warm-up and timed), e.g. to advance a bar."""
    tick = progress or (lambda name: None)
    dev = torch.device(device)
    built = zoo.build(model, dev, h_div_w=h_div_w, pn=pn)
    result = {
        "model": model,
        "device": _device_name(dev),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "batch": batch,
        "warmup": warmup,
        "repeats": repeats,
        "backend": backend,
        "cuda_graphs": cuda_graphs,
        "scales": None,
        "schedules": {},
    }
    for name in schedules:
        counted = functools.partial(tick, name)
        entry = _measure(built, _runner(name, built.family, backend), dev, batch, seed, warmup, repeats, tick=counted)
        result["scales"] = entry.pop("scales")
        if cuda_graphs:
            graphed_run = _runner(name, built.family, backend, cuda_graphs=True)
            entry["graphed"] = _measure(built, graphed_run, dev, batch, seed, warmup, repeats, counted, graphed=True)
            entry["graphed"].pop("scales")
            _release_graphs(built.model)
        result["schedules"][name] = entry
    if family(built.family).upstream_engine:  # what users run today: vanilla in upstream's data flow (cat KV, ...)
        vanilla = _runner("vanilla", built.family, backend)
        entry = _measure(built, vanilla, dev, batch, seed, warmup, repeats, engine="upstream")
        entry.pop("scales")
        result["baseline"] = {"name": "vanilla, upstream data flow", **entry}
    if text_encoder if text_encoder is not None else dev.type == "cuda":  # a 1.2B-parameter T5 is slow on a CPU
        result["text_encoder_ms"] = _text_encoder_ms(built.family, batch, dev, max(1, repeats))
    base = result["schedules"][schedules[0]]
    for entry in result["schedules"].values():
        entry["speedup"] = base["ms"]["total"] / entry["ms"]["total"]
        if cuda_graphs:
            entry["graphed"]["speedup"] = base["graphed"]["ms"]["total"] / entry["graphed"]["ms"]["total"]
            entry["graphed"]["speedup_vs_eager"] = base["ms"]["total"] / entry["graphed"]["ms"]["total"]
    return result


def _release_graphs(model) -> None:
    """Free ``model``'s captured graphs and their memory pool: graphs are cached per model, so without this every
    schedule's peak memory would include the graphs of the schedules measured before it."""
    graphs.clear(model)


def _measure(built, run_one, dev, batch, seed, warmup, repeats, tick=None, graphed=False, **session_kw) -> dict:
    """Time ``run_one`` (medians of ``repeats`` after ``warmup``), then count its kernel-launching ops once.

    ``graphed``: at least one warm-up generation (the one that captures); its ``capture`` time is ``capture_ms``.
    ``tick()`` is called after each warm-up and timed generation."""
    tick = tick or (lambda: None)
    capture_ms = None
    for w in range(max(1, warmup) if graphed else warmup):
        timer = timer_for(dev) if graphed and w == 0 else None
        run_one(built.new_session(batch=batch, seed=seed, **session_kw), timer)
        if timer is not None:
            capture_ms = timer.finish().get("capture")
        tick()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    runs = []
    for r in range(repeats):
        timer = timer_for(dev)
        timer.start("total")
        session = built.new_session(batch=batch, seed=seed + r, **session_kw)
        run_one(session, timer)
        timer.stop("total")
        runs.append(timer.finish())
        tick()
    entry = {"ms": medians(runs), "runs": runs, "scales": [list(hw) for hw in session.scales]}
    if dev.type == "cuda":
        entry["peak_memory_bytes"] = torch.cuda.max_memory_allocated(dev)
    else:  # the process's high-water mark so far (it only grows: compare schedules in separate processes)
        entry["max_rss_bytes"] = _max_rss_bytes()
    # one more, untimed generation under the dispatch counter: kernel-launching ops (device-independent)
    _, counter = count_launches(run_one, built.new_session(batch=batch, seed=seed, **session_kw), None)
    steps = sum(1 for label in runs[0] if label.startswith("scale"))
    entry["launches"] = counter.total
    entry["launches_per_step"] = counter.total / max(1, steps)
    entry["op_ms"] = entry["ms"].get("ops", 0.0)
    if graphed:
        entry["capture_ms"] = capture_ms
    return entry


def _max_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _columns(result: dict) -> list[tuple[str, str, dict]]:
    """(header, mode, entry) per column: each schedule eager, then graphed when the run measured graphs."""
    graphed = any("graphed" in entry for entry in result["schedules"].values())
    columns = []
    for name, entry in result["schedules"].items():
        if not graphed:
            columns.append((f"{name} ms", "eager", entry))
        else:
            columns += [(f"{name} eager ms", "eager", entry), (f"{name} graphed ms", "graphed", entry["graphed"])]
    return columns


def _row(label: str, columns, cell) -> list[str]:
    return [label, "", ""] + [cell(mode, entry) for _, mode, entry in columns]


def table(result: dict) -> str:
    """A text table: one row per scale step (tokens, each schedule's median ms), then decode, total, speedup.

    With graphed entries each schedule has an eager and a graphed column, the speedups are over the first schedule
    eager and graphed, and a row gives the capture time (graphed columns only)."""
    names = list(result["schedules"])
    columns = _columns(result)
    graphed = len(columns) > len(names)
    rows = [["step", "grid", "tokens"] + [header for header, _, _ in columns]]
    for k, (h, w) in enumerate(result["scales"]):
        cells = []
        for _, _, entry in columns:
            ms = entry["ms"].get(f"scale{k}")
            cells.append("skipped" if ms is None else f"{ms:.2f}")
        rows.append([str(k), f"{h}x{w}", str(h * w)] + cells)
    rows.append(_row("decode", columns, lambda mode, e: f"{e['ms'].get('decode', 0):.2f}"))
    rows.append(_row("total", columns, lambda mode, e: f"{e['ms']['total']:.2f}"))
    first = result["schedules"][names[0]]
    if not graphed:
        rows.append(_row("speedup", columns, lambda mode, e: f"{e['speedup']:.2f}x"))
    else:
        for mode, base in (("eager", first), ("graphed", first["graphed"])):
            label = f"speedup vs {names[0]} {mode}"
            rows.append(_row(label, columns, lambda m, e, b=base: f"{b['ms']['total'] / e['ms']['total']:.2f}x"))
        rows.append(_row("capture ms", columns, lambda mode, e: _capture_cell(e) if mode == "graphed" else "-"))
    if all("op_ms" in e for _, _, e in columns):  # graph replay runs no Python: the ops are timed eagerly only
        rows.append(_row("in ops", columns, lambda mode, e: f"{e['op_ms']:.2f}" if mode == "eager" else "-"))
    if all("launches_per_step" in e for _, _, e in columns):
        rows.append(_row("launches/step", columns, lambda mode, e: f"{e['launches_per_step']:.0f}"))
    if all("max_rss_bytes" in e for _, _, e in columns):
        rows.append(_row("max RSS GiB", columns, lambda mode, e: f"{e['max_rss_bytes'] / 2**30:.2f}"))
    if all("peak_memory_bytes" in e for _, _, e in columns):
        rows.append(_row("peak GiB", columns, lambda mode, e: f"{e['peak_memory_bytes'] / 2**30:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    if result.get("baseline"):
        b = result["baseline"]
        lines.append(
            f"baseline ({b['name']}): total {b['ms']['total']:.2f} ms, {b['launches_per_step']:.0f} launches/step; "
            f"{names[0]} is {b['ms']['total'] / first['ms']['total']:.2f}x faster"
            + (f" eager, {b['ms']['total'] / first['graphed']['ms']['total']:.2f}x graphed" if graphed else "")
        )
    head = (
        f"{result['model']} | batch {result['batch']} | {result['device']} | {result['date']} | "
        f"median of {result['repeats']} after {result['warmup']} warm-up"
    )
    if graphed:
        head += " | eager and CUDA graphs (capture timed apart)"
    if result.get("text_encoder_ms") is not None:
        head += f" | text encoder {result['text_encoder_ms']:.2f} ms (apart)"
    return head + "\n" + "\n".join(lines)


def _capture_cell(entry: dict) -> str:
    return "-" if entry.get("capture_ms") is None else f"{entry['capture_ms']:.2f}"


def save(result: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
