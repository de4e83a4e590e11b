"""The ``stagevar`` command line: ``demo``, ``generate``, ``calibrate``, ``eval``, ``bench``, ``env``.

Every argument, input file and output location is checked before any model is built. Exit status: 0 on success,
2 with one line ``stagevar: error: ...`` for a bad argument, path or file (also a checkpoint found unreadable or
not matching the model while loading), 1 with one such line for a failure while running (out of memory, a device
error, ...), 130 on Ctrl-C. ``STAGEVAR_TRACEBACK=1`` shows the
traceback of a runtime failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import stat
import sys
from pathlib import Path

import torch

from stagevar_kernels.backends import BACKENDS
from stagevar_kernels.philox import MAX_SEED

from . import families, peers
from .evaluation import command

ASPECT_RATIO_RANGE = (0.25, 4.0)  # Infinity's templates span 1:3 to 3:1; the nearest is used
PN_CHOICES = ["0.06M", "0.25M", "0.60M", "1M"]


class UsageError(Exception):
    """A bad argument, path or file found after parsing: one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line ``stagevar: error: ...`` (the usage is in ``--help``)."""

    def error(self, message: str):
        self.exit(2, f"stagevar: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------------------------- argument types
def model_name(text: str) -> str:
    """A model name, old spellings mapped to the current ones (``star`` is ``star-d30``)."""
    return families.canonical(text)


def aspect_ratio(text: str) -> float:
    """``H/W`` as a float (``0.5625``) or ``H:W`` (``9:16``), finite and within :data:`ASPECT_RATIO_RANGE`."""
    try:
        if ":" in text:
            h, w = text.split(":", 1)
            value = float(h) / float(w)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected H/W as a number or H:W, got {text!r}") from None
    low, high = ASPECT_RATIO_RANGE
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(f"H/W must lie in [{low}, {high}], got {text!r}")
    return value


def _number(kind, check, what):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{what}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, lambda v: v >= 1, "must be at least 1")
count = _number(int, lambda v: v >= 0, "must be at least 0")
seed_int = _number(int, lambda v: 0 <= v <= MAX_SEED, "must lie in [0, 2**63)")
finite = _number(float, math.isfinite, "must be finite")
positive = _number(float, lambda v: math.isfinite(v) and v > 0, "must be finite and > 0")
alpha_value = _number(float, lambda v: 0 < v <= 1, "must lie in (0, 1]")


# ----------------------------------------------------------------------------------------------- checks
def check_device(text: str) -> torch.device:
    """The device named ``text``, available on this machine; :class:`UsageError` otherwise."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device: unknown device {text!r} (expected cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise UsageError(f"--device {text}: CUDA is not available ({why}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UsageError(f"--device: {text!r} is not supported (expected cpu, cuda or cuda:N)")
    return device


def check_cuda_graphs(cuda_graphs: bool, device: torch.device) -> None:
    """``--cuda-graphs`` only on a CUDA device; :class:`UsageError` otherwise."""
    if cuda_graphs and device.type != "cuda":
        raise UsageError(f"--cuda-graphs: CUDA graphs need a CUDA device, not {device.type} (use --device cuda)")


def check_backend(backend: str | None, device: torch.device) -> None:
    if backend is None:
        return
    from stagevar_kernels.backends import available_backends

    available = available_backends(device)
    if backend not in available:
        raise UsageError(f"--backend {backend}: not available on {device.type} (available: {', '.join(available)})")


def _regular_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} not found: {path}")
    if p.is_dir():
        raise UsageError(f"{what}: {path} is a directory, expected a file")
    if not stat.S_ISREG(p.stat().st_mode):
        raise UsageError(f"{what}: {path} is not a regular file")
    return p


def _directory(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} not found: {path}")
    if not p.is_dir():
        raise UsageError(f"{what}: {path} is not a directory")
    return p


def _output_file(path: str, what: str) -> None:
    from .atomic import check_writable_file

    try:
        check_writable_file(path, what)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _output_dir(path: str, what: str) -> None:
    from .atomic import check_writable_dir

    if Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f"{what}: {path} exists and is not a directory")
    try:
        check_writable_dir(path, what)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _prompts(args) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts_file:
        path = _regular_file(args.prompts_file, "--prompts-file")
        if path.stat().st_size > 16 << 20:
            raise UsageError(f"--prompts-file: {path} is larger than 16 MiB")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--prompts-file: cannot read {path} as UTF-8 text ({err})") from None
        prompts += [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UsageError("give prompts with --prompt or --prompts-file")
    return prompts


def _check_size(args, family: str) -> None:
    """The image size (``--aspect-ratio``/``--pn``) is one that ``family`` generates."""
    try:
        families.family(family).check_size(args.aspect_ratio, args.pn)
    except ValueError as err:
        raise UsageError(f"--aspect-ratio/--pn: {str(err).split(': ', 1)[-1]}") from None


def _check_loading(args, family: str) -> None:
    """The checkpoint paths, the text encoder's package and the family's image size, before loading anything."""
    if not Path(args.checkpoint).exists():
        raise UsageError(f"checkpoint not found: {args.checkpoint}")
    if Path(args.checkpoint).is_dir():
        if not any(Path(args.checkpoint).glob("*.index.json")) and not any(
            p.suffix in (".pth", ".bin", ".safetensors") for p in Path(args.checkpoint).iterdir()
        ):
            raise UsageError(f"--checkpoint: {args.checkpoint} holds no *.index.json and no weight file")
    else:
        _regular_file(args.checkpoint, "checkpoint")
    _regular_file(args.vae, "--vae (VAE checkpoint)")
    _directory(args.text_encoder, "--text-encoder (a local folder)")
    if importlib.util.find_spec("transformers") is None:
        raise UsageError("the text encoder needs the 'transformers' package: pip install transformers sentencepiece")
    _check_size(args, family)


def _progress(args, **kwargs):
    """A tqdm bar on stderr, shown only on a terminal and without ``--quiet``."""
    from tqdm import tqdm

    # delay: the lines a command prints first are not interleaved with a bar drawn at once
    return tqdm(file=sys.stderr, disable=args.quiet or not sys.stderr.isatty(), delay=0.5, **kwargs)


def _ticker(bar):
    """``tick(label)`` advancing ``bar``; closes it at its total, before the command prints its results."""

    def tick(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)
        if bar.total is not None and bar.n >= bar.total:
            bar.close()

    return tick


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield i, items[i : i + size]


def _warn_if_extension_missing(device: torch.device, quiet: bool) -> None:
    from stagevar_kernels.backends import HAS_EXT

    if device.type == "cuda" and not HAS_EXT and not quiet:
        print(
            "stagevar: note: the compiled extension stagevar_kernels._C did not load, so the CUDA kernels are off "
            "(`stagevar env` says why)",
            file=sys.stderr,
        )


# ----------------------------------------------------------------------------------------------- loading
def _load_model(args, device: torch.device):
    """(model, vae, encode) from local checkpoint paths; ``encode(prompts)`` gives the text rows."""
    entry = families.family_of_name(args.model)
    negative = getattr(args, "negative_prompt", None)
    return entry.load(entry.checkpoints[args.model], args.checkpoint, args.vae, args.text_encoder, device, negative)


def _session_factory(args, family: str, model, vae, encode):
    """``factory(prompts, seeds)``: a fresh session of ``model`` with the command's size and guidance options."""
    entry = families.family(family)
    return entry.sessions(
        model,
        vae,
        encode,
        h_div_w=args.aspect_ratio,
        pn=args.pn,
        cfg=entry.default_cfg if args.cfg is None else args.cfg,
        tau=args.tau,
        negative_prompt=getattr(args, "negative_prompt", None),
    )


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from .atomic import atomic_path
    from .models.common import to_uint8

    array = to_uint8(image).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


# ----------------------------------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .demo import run_demo

    device = check_device(args.device)
    _output_file(args.out, "--out")
    with _progress(args, total=2 * (args.warmup + args.repeats), unit="generation", desc="demo") as bar:
        run_demo(
            args.out,
            seed=args.seed,
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
            model=args.model,
            progress=_ticker(bar),
        )
    return 0


def cmd_generate(args) -> int:
    from .evaluation import distributed
    from .loop import generate
    from .schedule import resolve

    family = families.family_of_name(args.model).name
    ctx = distributed.init(args.device)  # under torchrun: this rank's share of the prompt batches, its own GPU
    device = check_device(ctx.device)
    check_cuda_graphs(args.cuda_graphs, device)
    check_backend(args.backend, device)
    prompts = _prompts(args)
    schedule = _resolve(resolve, args.schedule, family)
    _check_loading(args, family)
    _output_dir(args.out, "--out")
    _warn_if_extension_missing(device, args.quiet)
    out = Path(args.out)

    jobs = distributed.generate_jobs(ctx, list(_batches(prompts, args.batch_size)), out)  # skips finished batches
    if jobs:
        model, vae, encode = _load_model(args, device)
        factory = _session_factory(args, family, model, vae, encode)
    with _progress(args, total=sum(len(b) for _, b in jobs), unit="image", desc="generate") as bar:
        for start, batch in jobs:
            seeds = [args.seed + start + i for i in range(len(batch))]  # a prompt's seed: its global index
            images = generate(
                factory(batch, seeds), schedule, backend=args.backend, seed=args.seed, cuda_graphs=args.cuda_graphs
            )
            for i, image in enumerate(images):
                _save_png(image, out / f"{start + i:05d}.png")  # atomic: a resumed run trusts what exists
            bar.update(len(batch))
    ctx.barrier()
    if ctx.is_main:
        print(f"wrote {len(prompts)} images to {out}")
    ctx.close()
    return 0


def _resolve(resolve, schedule: str, family: str):
    try:
        return resolve(schedule, family)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(f"--schedule: {err}") from None


def cmd_calibrate(args) -> int:
    from .calibration import calibrate
    from .schedule import resolve

    if not args.random and not (args.checkpoint and args.vae and args.text_encoder):
        raise UsageError("calibrate: give --random MODEL, or --checkpoint, --vae and --text-encoder")
    device = check_device(args.device)
    if args.random:
        from . import zoo

        family = zoo.family_of(args.random)
    else:
        from .evaluation.prompts import from_args

        family = families.family_of_name(args.model).name
        try:  # plain text, GenEval JSONL or a DPG folder
            prompts = [record.prompt for record in from_args(args)[0]]
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from None
        _check_loading(args, family)
    base = _resolve(resolve, args.schedule, family)
    if not base.rank_ratios:
        raise UsageError(f"--schedule {args.schedule}: has no fidelity steps to calibrate")
    _output_file(args.out, "--out")

    if args.random:
        built = zoo.build(args.random, device)
        total = args.runs
        sessions = (built.new_session(batch=1, seed=args.seed + i) for i in range(args.runs))
    else:
        model, vae, encode = _load_model(args, device)
        factory = _session_factory(args, family, model, vae, encode)
        batches = list(_batches(prompts, args.batch_size))
        total = len(batches)
        sessions = (factory(batch, [args.seed + s + i for i in range(len(batch))]) for s, batch in batches)
    with _progress(args, total=total, unit="generation", desc="calibrate") as bar:

        def counted(items):
            for item in items:
                yield item
                bar.update(1)

        result = calibrate(counted(sessions), base, alpha=args.alpha)
    print(result.table())
    table_json = args.table_json or str(Path(args.out).with_suffix(".table.json"))
    result.save_table(table_json)
    print(f"wrote {table_json}: the mean ± std table")
    schedule = result.schedule()
    schedule.save(args.out)
    print(f"wrote {args.out}: {schedule.name}")
    return 0


def cmd_bench(args) -> int:
    from . import benchmark, zoo
    from .atomic import write_text

    device = check_device(args.device)
    check_cuda_graphs(args.cuda_graphs, device)
    model = args.model or ("infinity-2b" if device.type == "cuda" else "infinity-demo")
    # the models with released checkpoints have billions of parameters: minutes and tens of GB per CPU generation
    if model in families.checkpoint_model_names() and device.type == "cpu" and not args.force:
        raise UsageError(
            f"--model {model}: billions of parameters; on a CPU one generation takes minutes and over 10 GB of "
            "memory. Use --model infinity-demo (the default on a CPU), a CUDA device, or --force"
        )
    check_backend(args.backend, device)
    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    if not schedules:
        raise UsageError("--schedules: give at least one schedule")
    family = zoo.family_of(model)
    for name in schedules:
        try:
            benchmark._runner(name, family, args.backend)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(f"--schedules {name}: {err}") from None
    _check_size(args, family)
    if args.json:
        _output_file(args.json, "--json")
    _warn_if_extension_missing(device, args.quiet)

    total = len(schedules) * benchmark.generations(args.warmup, args.repeats, args.cuda_graphs)
    with _progress(args, total=total, unit="generation", desc=f"bench {model}") as bar:
        result = benchmark.run(
            model,
            schedules,
            batch=args.batch_size,
            device=str(device),
            warmup=args.warmup,
            repeats=args.repeats,
            backend=args.backend,
            h_div_w=args.aspect_ratio,
            pn=args.pn,
            text_encoder=False if args.no_text_encoder else None,
            cuda_graphs=args.cuda_graphs,
            progress=_ticker(bar),
        )
    print(benchmark.table(result))
    if args.json:
        import json

        write_text(args.json, json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_env(args) -> int:
    from .env import report

    print(report())
    return 0


# ----------------------------------------------------------------------------------------------- parser
def add_eval_parser(sub) -> None:
    p = command.add_eval_parser(sub, _add_loading)
    # looked up at call time, so that a replaced cli._load_model (tests) is the one used
    p.set_defaults(
        load_model=lambda *a: _load_model(*a),
        session_factory=lambda *a: _session_factory(*a),
    )


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=_default_device(), help="cpu, cuda or cuda:N")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_loading(p: argparse.ArgumentParser, required: bool = True) -> None:
    table = families.FAMILIES.values()
    encoders = " or ".join(f"{f.text_encoder} ({f.title})" for f in table)
    cfgs = ", ".join(f"{f.title} {f.default_cfg:g}" for f in table)
    p.add_argument("--model", type=model_name, choices=sorted(families.checkpoint_model_names()), default="infinity-2b")
    p.add_argument("--checkpoint", required=required, help="transformer checkpoint (.pth, or a sharded 8B folder)")
    p.add_argument("--vae", required=required, help="VAE checkpoint file")
    p.add_argument("--text-encoder", required=required, help=f"local {encoders} folder")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts-file", help="a text file with one prompt per line")
    p.add_argument("--negative-prompt", help="replaces the null prompt of classifier-free guidance")
    p.add_argument("--batch-size", type=positive_int, default=1, help="prompts per generation")
    p.add_argument(
        "--aspect-ratio", type=aspect_ratio, default=1.0, help="H/W or H:W; the nearest Infinity template is used"
    )
    p.add_argument("--pn", default="1M", choices=PN_CHOICES, help="image size (pixels) of the Infinity schedule")
    p.add_argument("--cfg", type=finite, default=None, help=f"guidance scale (default: {cfgs})")
    p.add_argument("--tau", type=positive, default=0.5, help="Infinity's sampling temperature")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the first prompt (+1 per prompt)")
    _add_common(p)


def _add_cuda_graphs(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--cuda-graphs", action="store_true", help=f"{help} (CUDA only)")


def _subparser(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_demo_parser(sub) -> None:
    p = _subparser(sub, "demo", "vanilla vs the paper schedule on a small random-weight Infinity (minutes on a CPU)")
    p.add_argument("--out", default="stagevar_demo.png", help="the side-by-side PNG")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the generations")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs per schedule (the median is shown)")
    p.add_argument("--warmup", type=count, default=1, help="untimed runs per schedule first")
    p.add_argument(
        "--model",
        type=model_name,
        choices=["infinity-demo", "infinity-tiny"],
        default="infinity-demo",
        help="infinity-tiny: a seconds-long run of the same code (0.06M schedule)",
    )
    _add_common(p)
    p.set_defaults(func=cmd_demo, device="cpu")


def add_generate_parser(sub) -> None:
    p = _subparser(sub, "generate", "images from prompts with official checkpoints (local paths)")
    _add_loading(p)
    p.add_argument("--schedule", default="paper", help="preset name or schedule JSON file")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="ops backend (default: the device's best)")
    _add_cuda_graphs(p, "replay the computed scale steps as CUDA graphs, captured by the first generation")
    p.add_argument("--out", default="stagevar_out", help="output folder (created)")
    p.set_defaults(func=cmd_generate)


def add_calibrate_parser(sub) -> None:
    from .zoo import MODELS

    p = _subparser(sub, "calibrate", "per-unit rank ratios from vanilla generations (paper, appendix A.1)")
    _add_loading(p, required=False)
    p.add_argument(
        "--random", type=model_name, choices=MODELS, help="calibrate a random-weight model instead of checkpoints"
    )
    p.add_argument("--runs", type=positive_int, default=4, help="generations with --random")
    p.add_argument("--schedule", default="paper", help="the schedule whose fidelity steps are calibrated")
    p.add_argument("--alpha", type=alpha_value, default=0.96, help="energy threshold of the rank (Eq. 4)")
    p.add_argument("--out", default="calibrated_schedule.json", help="the calibrated schedule JSON")
    p.add_argument("--geneval-prompts", help="GenEval's evaluation_metadata.jsonl as the prompts")
    p.add_argument("--dpg-prompts", help="DPG-Bench's prompts folder (one <id>.txt per prompt) as the prompts")
    p.add_argument("--table-json", help="the mean ± std table as JSON (default: --out with .table.json)")
    p.set_defaults(func=cmd_calibrate)


def add_bench_parser(sub) -> None:
    from .zoo import MODELS

    p = _subparser(sub, "bench", "end-to-end latency of schedules side by side (random weights, real shapes)")
    p.add_argument(
        "--model",
        type=model_name,
        default=None,
        choices=MODELS,
        help="default: infinity-2b on CUDA, infinity-demo on a CPU",
    )
    p.add_argument("--force", action="store_true", help="run a multi-billion-parameter model on a CPU anyway")
    p.add_argument(
        "--schedules",
        default="vanilla,paper,skip-only,cfg-drop-only",
        help=f"comma-separated presets, schedule JSON files and peers ({', '.join(peers.PEERS)})",
    )
    p.add_argument("--batch-size", type=positive_int, default=1, help="images per generation")
    p.add_argument("--aspect-ratio", type=aspect_ratio, default=1.0, help="H/W or H:W (Infinity)")
    p.add_argument("--pn", default="1M", choices=PN_CHOICES, help="image size (pixels) of the Infinity schedule")
    p.add_argument("--warmup", type=count, default=2, help="untimed generations per schedule")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed generations per schedule (median)")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="ops backend (default: the device's best)")
    p.add_argument("--no-text-encoder", action="store_true", help="do not time the text encoder (timed on CUDA only)")
    _add_cuda_graphs(p, "measure every schedule eager and as CUDA graphs too (capture time reported apart)")
    p.add_argument("--json", help="write the full result here")
    _add_common(p)
    p.set_defaults(func=cmd_bench)


def add_env_parser(sub) -> None:
    p = _subparser(sub, "env", "versions, devices and which ops backends can run here (and why not)")
    p.set_defaults(func=cmd_env, quiet=True)


# one function per subcommand; a new subcommand is one more entry
SUBCOMMANDS = [
    add_demo_parser,
    add_generate_parser,
    add_calibrate_parser,
    add_eval_parser,
    add_bench_parser,
    add_env_parser,
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="stagevar", description="StageVAR for Infinity and STAR text-to-image models")
    parser.add_argument("--version", action="version", version=f"stagevar {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _one_line(err: BaseException) -> str:
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    else:
        text = str(err) or type(err).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (already reported)
        return done.code if isinstance(done.code, int) else 2
    try:
        return args.func(args)
    except UsageError as err:
        print(f"stagevar: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stagevar: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError) as err:  # a bad input file, or a missing optional package
        if os.environ.get("STAGEVAR_TRACEBACK") == "1":
            raise
        print(f"stagevar: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a runtime failure is one line (set STAGEVAR_TRACEBACK=1 for more)
        if os.environ.get("STAGEVAR_TRACEBACK") == "1":
            raise
        print(f"stagevar: error: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
