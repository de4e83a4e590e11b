"""``stagevar eval``: schedules and peers against vanilla on the same prompts and seeds.

For every prompt and schedule the samples are generated (or found complete on disk from an earlier run) and written
in the layout of the prompt source (GenEval, DPG-Bench or plain); then each schedule's samples are compared with
vanilla's as written (uint8, so a resumed run reports the same figures): PSNR, SSIM, Fig. 11's low/high-frequency
error and, with ``--clip``, the CLIP score to the prompt. Latency is the median over the generations this run made,
timed as ``stagevar bench`` times them (session creation to decoded image). Rank 0 writes ``eval.json``,
``eval.txt`` (the table) and ``grid.png`` (vanilla | schedule | difference) under ``--out``.

Seeds: sample ``k`` of the prompt at index ``i`` uses ``--seed + i * samples + k`` (``--seed + i`` with one sample),
for every schedule and whatever the number of processes. ``--batch-size`` splits a prompt's samples into
generations of at most that many images (one batch of 4 for GenEval's 4 samples with ``--batch-size 4``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics

import torch

from stagevar_kernels.backends import BACKENDS

from . import distributed, layouts, metrics, prompts

SUMMARY_KEYS = ("psnr", "ssim", "low_mse", "high_mse", "low_rel", "high_rel", "clip")


def add_eval_parser(sub, add_loading) -> argparse.ArgumentParser:
    """Register the ``eval`` subcommand on ``sub`` (the ``stagevar`` subparsers); ``add_loading(p, required)`` adds
    the command line's checkpoint options (the CLI passes its own, so that this module never imports the CLI, and
    sets ``load_model`` and ``session_factory`` on the parsed arguments for local checkpoints)."""
    from .. import zoo

    p = sub.add_parser("eval", help="quality of schedules and peers against vanilla (same prompts and seeds)")
    add_loading(p, required=False)
    p.add_argument("--random", choices=list(zoo.MODELS), help="evaluate a random-weight model instead of checkpoints")
    p.add_argument("--geneval-prompts", help="GenEval's evaluation_metadata.jsonl (writes GenEval's layout)")
    p.add_argument("--dpg-prompts", help="DPG-Bench's prompts folder, one <id>.txt per prompt (writes DPG's layout)")
    p.add_argument(
        "--schedules",
        default="vanilla,paper",
        help="comma-separated presets, schedule JSON files and peers (fastvar, skipvar-*); vanilla is always run",
    )
    p.add_argument("--samples", type=int, default=None, help="images per prompt (GenEval/DPG: 4, plain: 1)")
    p.add_argument("--out", default="stagevar_eval")
    p.add_argument("--warmup", type=int, default=1, help="untimed generations per schedule before the timed ones")
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.add_argument("--clip", help="local CLIP folder (transformers format) for the CLIP score to the prompt")
    p.add_argument(
        "--low-radius",
        type=float,
        default=metrics.LOW_RADIUS,
        help="low/high frequency split, as a fraction of Nyquist (default 0.25)",
    )
    p.add_argument("--grid-prompts", type=int, default=2, help="prompts shown in grid.png (0: no grid)")
    p.set_defaults(func=cmd_eval)
    return p


def _schedule_names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    names = ["vanilla"] + [n for n in names if n != "vanilla"]
    folders = [layouts.folder_name(n) for n in names]
    if len(set(folders)) != len(folders):
        raise ValueError(f"schedules: two schedules share an output folder name: {folders}")
    return names


def _builder(args):
    """(family, new_session(record, seeds)) for ``--random`` or local checkpoints."""
    if args.random:
        from .. import zoo

        built = zoo.build(args.random, args.device, h_div_w=args.aspect_ratio, pn=args.pn)
        return built.family, lambda record, seeds: built.new_session(batch=len(seeds), seed=seeds[0], seeds=seeds)
    if not (args.checkpoint and args.vae and args.text_encoder):
        raise ValueError("--random: give --random MODEL, or --checkpoint, --vae and --text-encoder")
    from .. import families

    family = families.family_of_name(args.model).name
    model, vae, encode = args.load_model(args, torch.device(args.device))
    factory = args.session_factory(args, family, model, vae, encode)
    return family, lambda record, seeds: factory([record.prompt] * len(seeds), seeds)


def _generate(args, ctx: distributed.Context, records, layout, names) -> dict[str, list[float]]:
    """Generate this rank's missing outputs; returns the timed milliseconds per schedule."""
    from tqdm import tqdm

    from ..benchmark import _runner
    from ..families import family_of_name
    from ..models.common import to_uint8
    from ..timing import timer_for

    family = family_of_name(args.random or args.model).name
    runners = {name: _runner(name, family, args.backend) for name in names}  # bad names fail before any work
    times: dict[str, list[float]] = {name: [] for name in names}
    todo = [(record, name) for record in records for name in names if not layout.complete(record, name)]
    if not todo:  # a finished run resumed: no model to load
        return times
    _, new_session = _builder(args)
    device = torch.device(args.device)
    warm: set[str] = set()
    for record, name in tqdm(todo, desc="images", unit="prompt x schedule", disable=not ctx.is_main):
        seeds = [args.seed + record.index * layout.samples + k for k in range(layout.samples)]
        if name not in warm:
            for _ in range(args.warmup):
                runners[name](new_session(record, seeds[: args.batch_size]), None)
            warm.add(name)
        parts = []
        for start in range(0, len(seeds), args.batch_size):
            timer = timer_for(device)
            timer.start("total")
            images = runners[name](new_session(record, seeds[start : start + args.batch_size]), timer)
            timer.stop("total")
            times[name].append(timer.finish()["total"])
            parts.append(to_uint8(images).cpu())
        layout.write(record, name, torch.cat(parts))
    return times


def _compare(args, records, layout, names, clip) -> list[dict]:
    """Per-image metrics of every schedule against vanilla, from the images on disk."""
    device = torch.device(args.device)
    rows = []
    for record in records:
        reference = layout.read(record, "vanilla").to(device)
        for name in names:
            images = layout.read(record, name).to(device)
            values = metrics.fidelity(images, reference, args.low_radius)
            scores = clip(images, [record.prompt] * len(images)) if clip else [None] * len(images)
            for k, (row, score) in enumerate(zip(values, scores)):
                seed = args.seed + record.index * layout.samples + k
                rows.append(
                    {"index": record.index, "key": record.key, "sample": k, "seed": seed, "schedule": name}
                    | row
                    | {"clip": score}
                )
    return rows


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarise(rows: list[dict], times: dict[str, list[float]], names: list[str]) -> dict[str, dict]:
    """Per schedule: median latency, mean of each metric over images (PSNR over non-identical images)."""
    out = {}
    for name in names:
        mine = [r for r in rows if r["schedule"] == name]
        entry = {
            "latency_ms": statistics.median(times[name]) if times[name] else None,
            "timed_generations": len(times[name]),
            "images": len(mine),
            "identical_to_vanilla": sum(r["psnr"] is None for r in mine),
        }
        entry |= {key: _mean(r[key] for r in mine) for key in SUMMARY_KEYS}
        out[name] = entry
    base = out[names[0]]["latency_ms"]
    for entry in out.values():
        entry["speedup"] = base / entry["latency_ms"] if base and entry["latency_ms"] else None
    return out


def table(report: dict) -> str:
    """The report as a text table, one row per schedule."""

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    head = ["schedule", "ms", "speedup", "PSNR dB", "SSIM", "low err", "high err", "CLIP", "identical"]
    rows = [head]
    for name, e in report["schedules"].items():
        psnr = "inf" if e["psnr"] is None and e["images"] and e["identical_to_vanilla"] == e["images"] else None
        rows.append(
            [
                name,
                fmt(e["latency_ms"], ".1f"),
                "-" if e["speedup"] is None else f"{e['speedup']:.2f}x",
                psnr or fmt(e["psnr"], ".2f"),
                fmt(e["ssim"], ".4f"),
                fmt(e["low_rel"], ".2e"),
                fmt(e["high_rel"], ".2e"),
                fmt(e["clip"], ".2f"),
                f"{e['identical_to_vanilla']}/{e['images']}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    info = (
        f"{report['model']} | {report['prompts']} prompts x {report['samples']} samples | {report['device']} | "
        f"{report['date']} | ms: median per generation of {report['batch']} image(s) | errors vs vanilla; "
        f"low/high err: Fourier energy of the difference over vanilla's, split at {report['low_radius']:g} Nyquist"
    )
    return info + "\n" + "\n".join(lines)


def grid(layout, records, names: list[str], count: int):
    """A labelled PIL image: per prompt (first ``count``) and schedule, vanilla | schedule | |difference| x4."""
    from PIL import Image, ImageDraw

    names = [n for n in names if n != "vanilla"]
    records = sorted(records, key=lambda r: r.index)[:count]
    if not names or not records:
        return None
    cell, label = 256, 14
    sheet = Image.new("RGB", (3 * cell, len(records) * len(names) * (cell + label)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for record in records:
        reference = layout.read(record, "vanilla")[0]
        for name in names:
            image = layout.read(record, name)[0]
            diff = ((image.int() - reference.int()).abs() * 4).clamp(max=255).to(torch.uint8)
            captions = (f"#{record.index} vanilla", name, f"|{name} - vanilla| x4")
            for col, (tile, caption) in enumerate(zip((reference, image, diff), captions)):
                thumb = Image.fromarray(tile.numpy())
                scale = cell / max(thumb.size)  # small images grow pixel by pixel, large ones shrink smoothly
                size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
                thumb = thumb.resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)
                sheet.paste(thumb, (col * cell, y + label))
                draw.text((col * cell + 2, y + 1), caption, fill="black")
            y += cell + label
    return sheet


def cmd_eval(args) -> int:
    ctx = distributed.init(args.device)
    args.device = ctx.device
    try:
        return _run(args, ctx)
    finally:
        ctx.close()


def _run(args, ctx: distributed.Context) -> int:
    if args.warmup < 0:
        raise ValueError(f"--warmup: must be at least 0, got {args.warmup}")
    if args.grid_prompts < 0:
        raise ValueError(f"--grid-prompts: must be at least 0, got {args.grid_prompts}")
    records, kind = prompts.from_args(args)
    samples = args.samples if args.samples is not None else (1 if kind == "plain" else 4)
    layout = layouts.Layout(args.out, kind, samples)
    names = _schedule_names(args.schedules)
    metrics._torchmetrics()  # a missing optional dependency fails before any generation
    clip = metrics.ClipScorer(args.clip, args.device) if args.clip else None
    mine = ctx.shard(records)
    times = _generate(args, ctx, mine, layout, names)
    rows = _compare(args, mine, layout, names, clip)
    gathered = ctx.gather({"rows": rows, "times": times})
    if not ctx.is_main:
        return 0
    order = {name: i for i, name in enumerate(names)}
    rows = sorted(
        (r for part in gathered for r in part["rows"]), key=lambda r: (r["index"], order[r["schedule"]], r["sample"])
    )
    all_times = {name: [t for part in gathered for t in part["times"][name]] for name in names}
    report = {
        "model": args.random or args.model,
        "device": str(torch.device(args.device))
        if torch.device(args.device).type != "cuda"
        else torch.cuda.get_device_name(torch.device(args.device)),
        "date": datetime.date.today().isoformat(),
        "source": kind,
        "prompts": len(records),
        "samples": samples,
        "seed": args.seed,
        "batch": args.batch_size,
        "world_size": ctx.world,
        "low_radius": args.low_radius,
        "layout": {name: str(layout.folder(name)) for name in names},
        "schedules": summarise(rows, all_times, names),
        "images": rows,
    }
    text = table(report)
    layouts.save_text(json.dumps(report, indent=2, allow_nan=False) + "\n", layout.root / "eval.json")
    layouts.save_text(text + "\n", layout.root / "eval.txt")
    print(text)
    sheet = grid(layout, records, names, args.grid_prompts) if args.grid_prompts else None
    if sheet is not None:
        tmp = layout.root / f".grid.png.{ctx.rank}.tmp"
        sheet.save(tmp, format="PNG")
        tmp.replace(layout.root / "grid.png")
    print(f"wrote {layout.root / 'eval.json'}, eval.txt" + (", grid.png" if sheet is not None else ""))
    return 0
