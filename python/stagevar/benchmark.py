"""End-to-end latency harness: schedules (and the FastVAR peer) side by side on one model, per scale step, VAE
decode included.

Each schedule runs ``warmup`` untimed generations, then ``repeats`` timed ones (device events on CUDA,
``perf_counter`` on CPU); the table shows medians. ``total`` spans the whole generation from the session's
creation (text projections) to the decoded image; ``ops`` sums the time inside the two stagevar ops. The text
encoder is timed apart (random flan-T5-XL / CLIP weights, only when ``transformers`` is installed).
"""

from __future__ import annotations

import datetime
import functools
import json
import platform
import resource
import sys

import torch

from . import zoo
from .engine import count_launches
from .loop import generate
from .schedule import resolve
from .timing import medians, timer_for


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _runner(name: str, family: str, backend: str | None):
    """``run(session, timer)`` for a schedule (preset or JSON) or a peer (``fastvar``, ``skipvar-*``)."""
    if name == "fastvar":
        if family != "infinity":
            raise ValueError("schedules: the FastVAR peer is an Infinity method")
        from .peers import fastvar

        return lambda session, timer: fastvar.generate(session, backend=backend, timer=timer)
    if name.startswith("skipvar-"):
        from .peers import skipvar

        schedule = skipvar.mode(name, "chunk" if family == "infinity" else "block")
    else:
        schedule = resolve(name, family)
    return lambda session, timer: generate(session, schedule, backend=backend, timer=timer)


def _text_encoder_ms(family: str, batch: int, device: torch.device, repeats: int) -> float | None:
    """Median time of the text encoder with random weights of the real shape (None without transformers)."""
    try:
        import transformers
    except ImportError:
        return None
    with torch.device(device):
        if family == "infinity":  # flan-T5-XL encoder, fp16 as upstream, prompts padded to 512 tokens
            cfg = transformers.T5Config(
                d_model=2048,
                d_ff=5120,
                d_kv=64,
                num_heads=32,
                num_layers=24,
                feed_forward_proj="gated-gelu",
                vocab_size=32128,
            )
            enc, tokens = transformers.T5EncoderModel(cfg), 512
        else:  # CLIP text model 1024 wide (OpenCLIP-H shape), 77 tokens
            cfg = transformers.CLIPTextConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=23,
                num_attention_heads=16,
                max_position_embeddings=77,
            )
            enc, tokens = transformers.CLIPTextModel(cfg), 77
    enc = enc.to(torch.float16 if device.type == "cuda" else torch.float32).eval()
    ids = torch.randint(0, 1000, (2 * batch if family == "star" else batch, tokens), device=device)
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
    progress=None,
) -> dict:
    """Benchmark ``schedules`` on ``model`` (a :mod:`stagevar.zoo` name); returns a JSON-ready dict.

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
        "scales": None,
        "schedules": {},
    }
    for name in schedules:
        result["schedules"][name] = _measure(
            built,
            _runner(name, built.family, backend),
            dev,
            batch,
            seed,
            warmup,
            repeats,
            tick=functools.partial(tick, name),
        )
        result["scales"] = result["schedules"][name].pop("scales")
    if built.family == "infinity":  # what users run today: vanilla in upstream's data flow (cat KV, unfused math)
        vanilla = _runner("vanilla", built.family, backend)
        entry = _measure(built, vanilla, dev, batch, seed, warmup, repeats, engine="upstream")
        entry.pop("scales")
        result["baseline"] = {"name": "vanilla, upstream data flow", **entry}
    if text_encoder if text_encoder is not None else dev.type == "cuda":  # a 1.2B-parameter T5 is slow on a CPU
        result["text_encoder_ms"] = _text_encoder_ms(built.family, batch, dev, max(1, repeats))
    base = result["schedules"][schedules[0]]["ms"]["total"]
    for entry in result["schedules"].values():
        entry["speedup"] = base / entry["ms"]["total"]
    return result


def _measure(built, run_one, dev, batch, seed, warmup, repeats, tick=None, **session_kw) -> dict:
    """Time ``run_one`` (medians of ``repeats`` after ``warmup``), then count its kernel-launching ops once.
    ``tick()`` is called after each warm-up and timed generation."""
    tick = tick or (lambda: None)
    for _ in range(warmup):
        run_one(built.new_session(batch=batch, seed=seed, **session_kw), None)
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
    return entry


def _max_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def table(result: dict) -> str:
    """A text table: one row per scale step (tokens, each schedule's median ms), then decode, total, speedup."""
    names = list(result["schedules"])
    rows = [["step", "grid", "tokens"] + [f"{n} ms" for n in names]]
    for k, (h, w) in enumerate(result["scales"]):
        cells = []
        for n in names:
            ms = result["schedules"][n]["ms"].get(f"scale{k}")
            cells.append("skipped" if ms is None else f"{ms:.2f}")
        rows.append([str(k), f"{h}x{w}", str(h * w)] + cells)
    rows.append(["decode", "", ""] + [f"{result['schedules'][n]['ms'].get('decode', 0):.2f}" for n in names])
    rows.append(["total", "", ""] + [f"{result['schedules'][n]['ms']['total']:.2f}" for n in names])
    rows.append(["speedup", "", ""] + [f"{result['schedules'][n]['speedup']:.2f}x" for n in names])
    if all("op_ms" in result["schedules"][n] for n in names):
        rows.append(["in ops", "", ""] + [f"{result['schedules'][n]['op_ms']:.2f}" for n in names])
    if all("launches_per_step" in result["schedules"][n] for n in names):
        rows.append(["launches/step", "", ""] + [f"{result['schedules'][n]['launches_per_step']:.0f}" for n in names])
    if all("max_rss_bytes" in result["schedules"][n] for n in names):
        rows.append(["max RSS GiB", "", ""] + [f"{result['schedules'][n]['max_rss_bytes'] / 2**30:.2f}" for n in names])
    if all("peak_memory_bytes" in result["schedules"][n] for n in names):
        rows.append(
            ["peak GiB", "", ""] + [f"{result['schedules'][n]['peak_memory_bytes'] / 2**30:.2f}" for n in names]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    if result.get("baseline"):
        b = result["baseline"]
        lines.append(
            f"baseline ({b['name']}): total {b['ms']['total']:.2f} ms, {b['launches_per_step']:.0f} launches/step; "
            f"{names[0]} is {b['ms']['total'] / result['schedules'][names[0]]['ms']['total']:.2f}x faster"
        )
    head = (
        f"{result['model']} | batch {result['batch']} | {result['device']} | {result['date']} | "
        f"median of {result['repeats']} after {result['warmup']} warm-up"
    )
    if result.get("text_encoder_ms") is not None:
        head += f" | text encoder {result['text_encoder_ms']:.2f} ms (apart)"
    return head + "\n" + "\n".join(lines)


def save(result: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
