"""The ``stagevar`` command line: ``demo``, ``generate``, ``calibrate``, ``eval``, ``bench``.

Bad paths and arguments end with a one-line ``stagevar: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

FAMILY_MODELS = {
    "infinity-2b": ("infinity", "infinity_2b"),
    "infinity-8b": ("infinity", "infinity_8b"),
    "star": ("star", "star-d30-1024"),
}


class UsageError(Exception):
    """A bad argument found after parsing (reported like argparse's own errors)."""


def _existing(path: str, what: str) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _prompts(args) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts_file:
        lines = Path(_existing(args.prompts_file, "prompts file")).read_text().splitlines()
        prompts += [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UsageError("give prompts with --prompt or --prompts-file")
    return prompts


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield i, items[i : i + size]


# ----------------------------------------------------------------------------------------------- loading
def _load_model(args):
    """(family, model, vae, encode) from local checkpoint paths; ``encode(prompts)`` gives the text rows."""
    family, config = FAMILY_MODELS[args.model]
    for path, what in (
        (args.checkpoint, "checkpoint"),
        (args.vae, "VAE checkpoint"),
        (args.text_encoder, "text encoder"),
    ):
        _existing(path, what)
    device = torch.device(args.device)
    if family == "infinity":
        from .models.infinity import encode_prompts, load_infinity, load_t5

        model, vae = load_infinity(config, args.checkpoint, args.vae, device=device)
        tokenizer, encoder = load_t5(
            args.text_encoder, device=device, dtype=torch.float16 if device.type == "cuda" else torch.float32
        )
        return family, model, vae, lambda prompts: encode_prompts(tokenizer, encoder, prompts)
    from .models.star import load_clip_text_encoder, load_pretrained

    model, vae = load_pretrained(args.checkpoint, args.vae, config, device=device)  # no random init of 1.7B
    clip = load_clip_text_encoder(args.text_encoder, device=device)
    negative = getattr(args, "negative_prompt", None) or ""  # STAR's null rows encode the empty prompt
    return family, model, vae, lambda prompts: clip.encode(list(prompts) + [negative] * len(prompts))


def _session_factory(args, family, model, vae, encode):
    if family == "infinity":
        from .models.infinity import get_scale_schedule, new_session

        scales = get_scale_schedule(args.aspect_ratio, args.pn)
        cfg = 3.0 if args.cfg is None else args.cfg
        negative = encode([args.negative_prompt]) if getattr(args, "negative_prompt", None) else None  # else cfg_uncond
        return lambda prompts, seeds: new_session(
            model, vae, scales, encode(prompts), negative_text=negative, seeds=seeds, cfg_list=cfg, tau_list=args.tau
        )
    from .models.star import new_session

    if args.aspect_ratio != 1.0 or args.pn != "1M":
        raise UsageError("--aspect-ratio/--pn: STAR generates square 1024x1024 images only")
    cfg = 4.5 if args.cfg is None else args.cfg
    return lambda prompts, seeds: new_session(model, vae, encode(prompts), batch=len(prompts), seeds=seeds, cfg=cfg)


# ----------------------------------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, seed=args.seed, repeats=args.repeats)
    return 0


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from .evaluation import distributed, layouts
    from .generate import generate
    from .schedule import resolve

    ctx = distributed.init(args.device)  # under torchrun: this rank's share of the prompt batches, its own GPU
    args.device = ctx.device
    prompts = _prompts(args)
    family, model, vae, encode = _load_model(args)
    schedule = resolve(args.schedule, family)
    factory = _session_factory(args, family, model, vae, encode)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = distributed.generate_jobs(ctx, list(_batches(prompts, args.batch_size)), out)  # skips finished batches
    for start, batch in tqdm(jobs, desc="prompts", unit="batch", disable=not ctx.is_main):
        seeds = [args.seed + start + i for i in range(len(batch))]
        images = generate(factory(batch, seeds), schedule, backend=args.backend, seed=args.seed)
        for i, image in enumerate(images):
            array = image.permute(1, 2, 0).mul(255).to(torch.uint8).cpu().numpy()  # truncation, as upstream
            layouts.save_png(array, out / f"{start + i:05d}.png")  # atomic: a resumed run trusts what exists
    ctx.barrier()
    if ctx.is_main:
        print(f"wrote {len(prompts)} images to {out}")
    ctx.close()
    return 0


def cmd_calibrate(args) -> int:
    from .calibrate import calibrate
    from .schedule import resolve

    if args.random:
        from . import zoo

        built = zoo.build(args.random, args.device)
        family = built.family
        sessions = (built.new_session(batch=1, seed=args.seed + i) for i in range(args.runs))
    else:
        from .evaluation.prompts import from_args

        prompts = [record.prompt for record in from_args(args)[0]]  # plain text, GenEval JSONL or DPG folder
        family, model, vae, encode = _load_model(args)
        factory = _session_factory(args, family, model, vae, encode)
        sessions = (
            factory(batch, [args.seed + s + i for i in range(len(batch))])
            for s, batch in _batches(prompts, args.batch_size)
        )
    base = resolve(args.schedule, family)
    result = calibrate(sessions, base, alpha=args.alpha)
    print(result.table())
    table_json = args.table_json or str(Path(args.out).with_suffix(".table.json"))
    result.save_table(table_json)
    print(f"wrote {table_json}: the mean ± std table")
    schedule = result.schedule()
    schedule.save(args.out)
    print(f"wrote {args.out}: {schedule.name}")
    return 0


def cmd_bench(args) -> int:
    from . import benchmark

    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    result = benchmark.run(
        args.model,
        schedules,
        batch=args.batch_size,
        device=args.device,
        warmup=args.warmup,
        repeats=args.repeats,
        backend=args.backend,
        h_div_w=args.aspect_ratio,
        pn=args.pn,
        text_encoder=False if args.no_text_encoder else None,
    )
    print(benchmark.table(result))
    if args.json:
        benchmark.save(result, args.json)
        print(f"wrote {args.json}")
    return 0


# ----------------------------------------------------------------------------------------------- parser
def _add_loading(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", choices=sorted(FAMILY_MODELS), default="infinity-2b")
    p.add_argument("--checkpoint", required=required, help="transformer checkpoint (.pth, or a sharded 8B folder)")
    p.add_argument("--vae", required=required, help="VAE checkpoint")
    p.add_argument("--text-encoder", required=required, help="local flan-T5-XL (Infinity) or CLIP (STAR) folder")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts-file", help="a text file with one prompt per line")
    p.add_argument("--negative-prompt", help="replaces the null prompt of classifier-free guidance")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--aspect-ratio", type=float, default=1.0, help="h/w; the nearest Infinity template is used")
    p.add_argument("--pn", default="1M", choices=["0.06M", "0.25M", "0.60M", "1M"])
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (Infinity 3, STAR 4.5)")
    p.add_argument("--tau", type=float, default=0.5, help="Infinity's sampling temperature")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stagevar", description="StageVAR for Infinity and STAR text-to-image models")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="vanilla vs the paper schedule on a small random-weight Infinity (CPU, ~1 min)")
    p.add_argument("--out", default="stagevar_demo.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("generate", help="images from prompts with official checkpoints (local paths)")
    _add_loading(p)
    p.add_argument("--schedule", default="paper", help="preset name or schedule JSON file")
    p.add_argument("--backend", choices=["reference", "triton", "cuda"], default=None)
    p.add_argument("--out", default="stagevar_out")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("calibrate", help="per-unit rank ratios from vanilla generations (paper, appendix A.1)")
    _add_loading(p, required=False)
    p.add_argument(
        "--random",
        choices=["infinity-2b", "infinity-8b", "infinity-demo", "infinity-tiny", "star-d30", "star-tiny"],
        help="calibrate a random-weight model instead of checkpoints",
    )
    p.add_argument("--runs", type=int, default=4, help="generations with --random")
    p.add_argument("--schedule", default="paper", help="the schedule whose fidelity steps are calibrated")
    p.add_argument("--alpha", type=float, default=0.96)
    p.add_argument("--out", default="calibrated_schedule.json")
    p.add_argument("--geneval-prompts", help="GenEval's evaluation_metadata.jsonl as the prompts")
    p.add_argument("--dpg-prompts", help="DPG-Bench's prompts folder (one <id>.txt per prompt) as the prompts")
    p.add_argument("--table-json", help="the mean ± std table as JSON (default: --out with .table.json)")
    p.set_defaults(func=cmd_calibrate)

    from .evaluation.command import add_eval_parser

    add_eval_parser(sub)

    p = sub.add_parser("bench", help="end-to-end latency of schedules side by side (random weights, real shapes)")
    p.add_argument(
        "--model",
        default="infinity-2b",
        choices=["infinity-2b", "infinity-8b", "infinity-demo", "infinity-tiny", "star-d30", "star-tiny"],
    )
    p.add_argument(
        "--schedules",
        default="vanilla,paper,skip-only,cfg-drop-only",
        help="comma-separated presets, schedule JSON files and peers (fastvar, skipvar-skip1..3, skipvar-cond1..3)",
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--aspect-ratio", type=float, default=1.0)
    p.add_argument("--pn", default="1M", choices=["0.06M", "0.25M", "0.60M", "1M"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--backend", choices=["reference", "triton", "cuda"], default=None)
    p.add_argument("--no-text-encoder", action="store_true", help="do not time the text encoder (timed on CUDA only)")
    p.add_argument("--json", help="write the full result here")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "calibrate" and not args.random and not (args.checkpoint and args.vae and args.text_encoder):
        parser.error("calibrate: give --random MODEL, or --checkpoint, --vae and --text-encoder")
    if getattr(args, "batch_size", 1) < 1:
        parser.error("--batch-size: must be at least 1")
    try:
        return args.func(args)
    except UsageError as err:
        parser.error(str(err))
    except (FileNotFoundError, ValueError, KeyError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"stagevar: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
