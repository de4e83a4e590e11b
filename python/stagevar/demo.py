"""``stagevar demo``: vanilla against the ``paper`` schedule on a small random-weight Infinity, on any machine.

The model has Infinity's architecture (8 block chunks, cosine attention with 2D RoPE, bitwise head, a BSQ-style
decoder with 16x upsampling) at the full 1024x1024 13-step schedule, but is narrow and has random weights: the
images are noise, the per-step costs have the real shape (the last steps dominate), so the speedup is real.
Each schedule is warmed up first and timed over a few runs; the table shows medians and the spread of the totals.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from . import zoo
from .fidelity import rank_for
from .loop import generate
from .models.common import to_uint8
from .schedule import presets
from .timing import medians, timer_for


def _describe(plan_step, tokens: int) -> str:
    if plan_step.mode == "skip":
        return "skipped"
    if plan_step.mode == "full":
        return "all" if plan_step.guidance == "cfg" else f"all, {plan_step.guidance} rows"
    return f"r={rank_for(plan_step.ratios[0], tokens)} ({plan_step.ratios[0]:.1%}), {plan_step.guidance} rows"


LABEL_HEIGHT = 28  # pixels of the caption band above each panel


def save_side_by_side(
    left: torch.Tensor, right: torch.Tensor, path: str | Path, labels: tuple[str, str] | None = None
) -> None:
    """Save two float RGB images ``(3, H, W)`` in [0, 1] next to each other as a PNG, atomically.

    ``labels``: captions drawn above the left and the right panel (PIL's default font)."""
    from PIL import Image, ImageDraw

    from .atomic import atomic_path

    both = torch.cat([left, torch.ones_like(left[:, :, :16]), right], dim=2)
    array = to_uint8(both).cpu().numpy()
    image = Image.fromarray(array)
    if labels is not None:
        framed = Image.new("RGB", (image.width, image.height + LABEL_HEIGHT), "white")
        framed.paste(image, (0, LABEL_HEIGHT))
        draw = ImageDraw.Draw(framed)
        for x, text in ((4, labels[0]), (left.shape[2] + 16 + 4, labels[1])):
            draw.text((x, 8), text, fill="black")
        image = framed
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _time(built, schedule, seed: int, dev: torch.device) -> tuple[dict, torch.Tensor, list, int]:
    """(ms per label, the image, the scales, the number of units) of one generation under ``schedule``."""
    timer = timer_for(dev)
    timer.start("total")
    session = built.new_session(batch=1, seed=seed)
    units = len(session.units(schedule.unit))
    image = generate(session, schedule, timer=timer)
    timer.stop("total")
    return timer.finish(), image[0], session.scales, units


def run_demo(
    out: str | Path = "stagevar_demo.png",
    seed: int = 0,
    repeats: int = 3,
    device: str | torch.device = "cpu",
    *,
    warmup: int = 1,
    model: str = "infinity-demo",
    progress=None,
) -> dict:
    """Run the demo, print the table, save the labelled PNG; returns the measured numbers.

    Each schedule runs ``warmup`` untimed generations, then ``repeats`` timed ones (the table shows medians).
    ``model``: ``infinity-demo`` (1024x1024) or ``infinity-tiny`` (a seconds-long run of the same code).
    ``progress(label)`` is called after each generation.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats/warmup: need repeats >= 1 and warmup >= 0, got {repeats}/{warmup}")
    dev = torch.device(device)
    tick = progress or (lambda label: None)
    print("stagevar demo: a small Infinity-architecture model with RANDOM weights (the images are noise; the")
    print(f"timings are the point). Batch 1, CFG 3, {warmup} warm-up + {repeats} timed runs per schedule.")
    start = time.perf_counter()
    built = zoo.build(model, dev)
    table = presets(built.family)
    results = {}
    for name in ("vanilla", "paper"):
        for _ in range(warmup):
            _time(built, table[name], seed, dev)
            tick(f"{name} warm-up")
        runs = []
        for _ in range(repeats):
            ms, image, scales, units = _time(built, table[name], seed, dev)
            runs.append(ms)
            tick(name)
        totals = sorted(r["total"] for r in runs)
        results[name] = {"ms": medians(runs), "image": image, "scales": scales, "totals": totals, "units": units}
    scales = results["vanilla"]["scales"]
    plan = table["paper"].plan(len(scales), results["paper"]["units"])
    van, pap = results["vanilla"]["ms"], results["paper"]["ms"]
    rows = [("step", "grid", "tokens", "paper does", "vanilla ms", "share", "paper ms", "share")]
    for k, (h, w) in enumerate(scales):
        v, p = van[f"scale{k}"], pap.get(f"scale{k}")
        rows.append(
            (
                str(k),
                f"{h}x{w}",
                str(h * w),
                _describe(plan[k], h * w),
                f"{v:.0f}",
                f"{v / van['total']:.1%}",
                "-" if p is None else f"{p:.0f}",
                "-" if p is None else f"{p / pap['total']:.1%}",
            )
        )
    rows.append(
        (
            "decode",
            "",
            "",
            "",
            f"{van['decode']:.0f}",
            f"{van['decode'] / van['total']:.1%}",
            f"{pap['decode']:.0f}",
            f"{pap['decode'] / pap['total']:.1%}",
        )
    )
    rows.append(("total", "", "", "", f"{van['total']:.0f}", "", f"{pap['total']:.0f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    speedup = van["total"] / pap["total"]
    vt, pt = results["vanilla"]["totals"], results["paper"]["totals"]
    print(
        f"speedup of the paper schedule over vanilla: {speedup:.2f}x (medians of {repeats} runs after {warmup} "
        f"warm-up; totals vanilla {vt[0]:.0f}-{vt[-1]:.0f} ms, paper {pt[0]:.0f}-{pt[-1]:.0f} ms; "
        f"speedup across runs {vt[0] / pt[-1]:.2f}x-{vt[-1] / pt[0]:.2f}x; {dev.type}, "
        f"{torch.get_num_threads()} threads)"
    )
    labels = (f"vanilla: {van['total']:.0f} ms", f"paper (StageVAR): {pap['total']:.0f} ms ({speedup:.2f}x)")
    save_side_by_side(results["vanilla"]["image"], results["paper"]["image"], out, labels=labels)
    print(f"saved {out} (left: vanilla, right: paper); the demo took {time.perf_counter() - start:.0f} s")
    totals = {"vanilla": vt, "paper": pt}
    return {"speedup": speedup, "vanilla_ms": van, "paper_ms": pap, "png": str(out), "totals": totals}
