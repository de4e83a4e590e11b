"""``stagevar demo``: vanilla against the ``paper`` schedule on a small random-weight Infinity, on any machine.

The model has Infinity's architecture (8 block chunks, cosine attention with 2D RoPE, bitwise head, a BSQ-style
decoder with 16x upsampling) at the full 1024x1024 13-step schedule, but is narrow and has random weights: the
images are noise, the per-step costs have the real shape (the last steps dominate), so the speedup is real.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from . import zoo
from .fidelity import rank_for
from .generate import generate
from .schedule import presets
from .timing import medians, timer_for


def _describe(plan_step, tokens: int) -> str:
    if plan_step.mode == "skip":
        return "skipped"
    if plan_step.mode == "full":
        return "all" if plan_step.guidance == "cfg" else f"all, {plan_step.guidance} rows"
    return f"r={rank_for(plan_step.ratios[0], tokens)} ({plan_step.ratios[0]:.1%}), {plan_step.guidance} rows"


def save_side_by_side(left: torch.Tensor, right: torch.Tensor, path: str | Path) -> None:
    """Save two float RGB images ``(3, H, W)`` in [0, 1] next to each other as a PNG."""
    from PIL import Image

    both = torch.cat([left, torch.ones_like(left[:, :, :16]), right], dim=2)
    array = both.permute(1, 2, 0).mul(255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    Image.fromarray(array).save(path)


def run_demo(out: str | Path = "stagevar_demo.png", seed: int = 0, repeats: int = 1, device: str = "cpu") -> dict:
    """Run the demo, print the table, save the PNG; returns the measured numbers."""
    dev = torch.device(device)
    print("stagevar demo: a small Infinity-architecture model with RANDOM weights (the images are noise; the")
    print("timings are the point). Schedule: 1024x1024, 13 scale steps, batch 1, CFG 3.")
    start = time.perf_counter()
    built = zoo.build("infinity-demo", dev)
    table = presets("infinity")
    results = {}
    for name in ("vanilla", "paper"):
        runs, image = [], None
        for _ in range(repeats):
            timer = timer_for(dev)
            timer.start("total")
            session = built.new_session(batch=1, seed=seed)
            image = generate(session, table[name], timer=timer)
            timer.stop("total")
            runs.append(timer.finish())
        results[name] = {"ms": medians(runs), "image": image[0], "scales": session.scales}
    scales = results["vanilla"]["scales"]
    plan = table["paper"].plan(len(scales), 8)
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
    print(
        f"speedup of the paper schedule over vanilla: {speedup:.2f}x ({torch.device(device).type}, "
        f"{torch.get_num_threads()} threads; one run each, no warm-up)"
    )
    save_side_by_side(results["vanilla"]["image"], results["paper"]["image"], out)
    print(f"saved {out} (left: vanilla, right: paper); the demo took {time.perf_counter() - start:.0f} s")
    return {"speedup": speedup, "vanilla_ms": van, "paper_ms": pap, "png": str(out)}
