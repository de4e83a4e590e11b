"""Train the toy model: ``python -m stagevar.toy.train --out DIR [--steps N] [--device cuda]``.

Stage A trains the tokenizer (reconstruction MSE + commitment to the multi-scale bitwise codes); stage B freezes it
and trains the text encoder and the Infinity transformer with teacher forcing on the tokenizer's bit labels
(cross-entropy per bit over the block-causal forward, 10% of captions replaced by the null text for CFG).

Deterministic: every batch is a pure function of (stage, step) (procedural data, per-step generators for the
condition dropout), weights start from ``seed``, and ``torch.use_deterministic_algorithms`` is on (on CUDA in
warn-only mode: some interpolation backward kernels have no deterministic variant). Resumable: ``DIR/checkpoint.pt``
(weights, optimiser, RNG states, the log) is written every ``checkpoint_every`` steps, at a stage change and on
``--stop-after N`` (steps) or ``--max-seconds S`` (wall time of the call); running the same command again continues
from it, giving the weights an uninterrupted run gives.

The result in ``DIR``: ``infinity.safetensors`` (the transformer, official key names), ``tokenizer.safetensors``
(``encoder.*`` and the BSQVAE ``decoder.*``), ``text.safetensors``, ``config.json``, ``SHA256SUMS``,
``train_log.jsonl``; load it with :func:`stagevar.toy.load`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..schedule import presets
from . import data
from .load import CHECKSUMS, WEIGHT_FILES, evaluate, load, sha256
from .model import (
    TOY_CONFIGS,
    TRAIN_FULL,
    TRAIN_REHEARSAL,
    ToyConfig,
    ToyModules,
    TrainConfig,
    build,
    config_json,
    estimate,
    null_rows,
    train_logits,
)
from .text import tokenize
from .tokenizer import quantize

STREAM_A, STREAM_B = 1000, 2000  # data streams of the two stages (offset by the training seed)


class StepBatches(torch.utils.data.Dataset):
    """Item ``step``: the layouts and caption tokens of that step's batch (CPU tensors; drawn on the device)."""

    def __init__(self, stream: int, batch: int, maxlen: int):
        self.stream, self.batch, self.maxlen = stream, batch, maxlen

    def __len__(self):
        return 2**31 - 1

    def __getitem__(self, step: int):
        drawn = [data.sample(self.stream, step * self.batch + i) for i in range(self.batch)]
        params, rgb = data.layout_tensors([lay for _, lay in drawn])
        ids, mask = tokenize([data.caption(s) for s, _ in drawn], self.maxlen)
        return params, rgb, ids, mask


def _batches(stream: int, batch: int, maxlen: int, start: int, stop: int, workers: int):
    ds = StepBatches(stream, batch, maxlen)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, sampler=range(start, stop), num_workers=workers, prefetch_factor=4 if workers else None
    )
    return zip(range(start, stop), loader)


def lr_at(step: int, steps: int, base: float, warmup: float) -> float:
    """Linear warm-up over ``warmup * steps`` steps, then cosine from ``base`` to ``base / 10``."""
    warm = max(1, int(warmup * steps))
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * t)))


def _save_file(tensors: dict[str, torch.Tensor], path: Path) -> None:
    try:
        from safetensors.torch import save_file
    except ImportError as e:
        raise ImportError("saving the toy weights needs the 'safetensors' package (pip install safetensors)") from e
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(path))


def save_result(mods: ToyModules, train: TrainConfig, out: Path, log: list[dict]) -> None:
    """Write the weights, config, log and checksums of a finished run into ``out``."""
    _save_file(dict(mods.infinity.state_dict()), out / "infinity.safetensors")
    _save_file(mods.tokenizer.state_for_saving(), out / "tokenizer.safetensors")
    _save_file(dict(mods.text.state_dict()), out / "text.safetensors")
    (out / "config.json").write_text(config_json(mods.config, train) + "\n")
    (out / "train_log.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in log))
    names = [*WEIGHT_FILES, "config.json"]
    (out / CHECKSUMS).write_text("".join(f"{sha256(out / n)}  {n}\n" for n in names))


class _Run:
    """The state of one training run (modules, optimiser, position, log) and its checkpointing."""

    def __init__(self, out: Path, config: ToyConfig, train: TrainConfig, device: torch.device):
        self.out, self.config, self.train, self.device = out, config, train, device
        self.mods = build(config, device=device, seed=train.seed)
        self.stage, self.step, self.log = "A", 0, []
        self.opt = self._optimizer()
        self.spent = 0.0  # training seconds of earlier calls
        self.ran = 0  # steps run by this call (for stop_after)
        self.deadline: float | None = None  # perf_counter time after which this call stops (max_seconds)

    def _optimizer(self):
        if self.stage == "A":
            params = list(self.mods.tokenizer.parameters())
        else:
            params = list(self.mods.text.parameters()) + list(self.mods.infinity.parameters())
        return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)

    @property
    def path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save(self) -> None:
        state = {
            "config": config_json(self.config, self.train),
            "stage": self.stage,
            "step": self.step,
            "parts": {k: m.state_dict() for k, m in self.mods.parts().items()},
            "opt": self.opt.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "log": self.log,
            "spent": self.spent,
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)  # atomic: an interrupted save leaves the previous checkpoint

    def load(self) -> None:
        state = torch.load(self.path, map_location=self.device, weights_only=False)
        if state["config"] != config_json(self.config, self.train):
            raise ValueError(f"out: {self.path} belongs to another configuration; use a new --out folder")
        for k, m in self.mods.parts().items():
            m.load_state_dict(state["parts"][k])
        self.stage, self.step, self.log, self.spent = state["stage"], state["step"], state["log"], state["spent"]
        self.opt = self._optimizer()
        self.opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"].cpu())
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _stage_a_step(run: _Run, batch) -> dict:
    tok, tr = run.mods.tokenizer, run.train
    params, rgb = batch[0].to(run.device), batch[1].to(run.device)
    images = data.render_tensors(params, rgb)
    with _autocast(run.device):
        rec, z, q = tok.reconstruct(images, run.config.scales)
    rec_loss = F.mse_loss(rec.float(), images * 2 - 1)
    commit = F.mse_loss(z.float(), q)
    loss = rec_loss + tr.commit * commit
    return {"loss": loss, "rec": rec_loss, "commit": commit}


def _stage_b_step(run: _Run, batch) -> dict:
    m, tr = run.mods, run.train
    params, rgb, ids, mask = (t.to(run.device) for t in batch)
    images = data.render_tensors(params, rgb)
    with torch.no_grad(), _autocast(run.device):
        z = m.tokenizer.encoder(images * 2 - 1)
    _, bits, x_wo_prefix = quantize(z.float(), run.config.scales)
    labels = torch.cat(bits, dim=1)  # (B, L, d)
    g = torch.Generator().manual_seed(tr.seed * 1_000_003 + run.step)
    drop = torch.rand(ids.shape[0], generator=g) < tr.cond_drop
    text = null_rows(m.infinity, m.text(ids, mask), drop)
    with _autocast(run.device):
        logits = train_logits(m.infinity, text, x_wo_prefix, run.config.scales)
    B, L, d = labels.shape
    loss = F.cross_entropy(logits.float().view(B * L * d, 2), labels.view(-1))
    with torch.no_grad():
        acc = (logits.view(B, L, d, 2).argmax(-1) == labels).float().mean()
    return {"loss": loss, "bit_acc": acc}


def _run_stage(run: _Run, stop_at_total: int | None, workers: int, echo) -> bool:
    """Train the current stage from ``run.step``; returns False if ``stop_at_total`` steps of this call ran out.
    The log gets 100 records per stage (every step when there are fewer)."""
    tr = run.train
    steps, base, batch = (tr.steps_a, tr.lr_a, tr.batch_a) if run.stage == "A" else (tr.steps_b, tr.lr_b, tr.batch_b)
    log_every = max(1, steps // 100)
    stream = (STREAM_A if run.stage == "A" else STREAM_B) + tr.seed
    fn = _stage_a_step if run.stage == "A" else _stage_b_step
    parts = [run.mods.tokenizer] if run.stage == "A" else [run.mods.text, run.mods.infinity]
    run.mods.tokenizer.train(run.stage == "A")
    for p in parts:
        p.train()
    params = [p for part in parts for p in part.parameters()]
    t0 = time.perf_counter()
    for step, batch_cpu in _batches(stream, batch, run.mods.text.maxlen, run.step, steps, workers):
        if stop_at_total is not None and run.ran >= stop_at_total:
            return False
        if run.deadline is not None and time.perf_counter() >= run.deadline:
            return False
        for group in run.opt.param_groups:
            group["lr"] = lr_at(step, steps, base, tr.warmup)
        out = fn(run, batch_cpu)
        run.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, tr.grad_clip)
        run.opt.step()
        run.step, run.ran = step + 1, run.ran + 1
        if run.step % log_every == 0 or run.step == steps:
            rec = {"stage": run.stage, "step": run.step, "lr": round(run.opt.param_groups[0]["lr"], 8)}
            rec |= {k: round(float(v.detach()), 6) for k, v in out.items()}
            rec["seconds"] = round(run.spent + time.perf_counter() - t0, 2)
            run.log.append(rec)
            echo(json.dumps(rec))
        if run.step % tr.checkpoint_every == 0 and run.step < steps:
            run.spent += time.perf_counter() - t0
            t0 = time.perf_counter()
            run.save()
    run.spent += time.perf_counter() - t0
    return True


def train(
    out: str | Path,
    config: ToyConfig,
    train_cfg: TrainConfig,
    device="cpu",
    stop_after: int | None = None,
    workers: int = 0,
    echo=print,
    max_seconds: float | None = None,
) -> str:
    """Train (or continue training) into ``out``. Returns ``"done"`` or ``"stopped"``: after ``stop_after`` steps
    or ``max_seconds`` of training in this call, a checkpoint is written; call again to continue. Where a call stops
    does not change the final weights."""
    start = time.perf_counter()
    out, device = Path(out), torch.device(device)
    if stop_after is not None and stop_after < 0:
        raise ValueError(f"stop_after: expected >= 0, got {stop_after}")
    if max_seconds is not None and not max_seconds >= 0:
        raise ValueError(f"max_seconds: expected >= 0, got {max_seconds}")
    out.mkdir(parents=True, exist_ok=True)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        run = _Run(out, config, train_cfg, device)
        run.deadline = None if max_seconds is None else start + max_seconds
        if run.path.exists():
            run.load()
            echo(f"resuming stage {run.stage} at step {run.step} from {run.path}")
        elif all((out / n).exists() for n in WEIGHT_FILES):
            raise ValueError(f"out: {out} already holds a finished run; use a new --out folder")
        if run.stage == "A":
            if not _run_stage(run, stop_after, workers, echo):
                run.save()
                return "stopped"
            run.stage, run.step = "B", 0
            run.opt = run._optimizer()
            run.save()
        if not _run_stage(run, stop_after, workers, echo):
            run.save()
            return "stopped"
        for part in run.mods.parts().values():
            part.eval()
        save_result(run.mods, train_cfg, out, run.log)
        run.path.unlink()
        return "done"
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m stagevar.toy.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="result folder (a checkpoint in it is resumed)")
    p.add_argument("--config", default="toy64", choices=sorted(TOY_CONFIGS))
    p.add_argument("--rehearsal", action="store_true", help="the CI rehearsal's step counts and batch sizes")
    p.add_argument("--steps", type=int, help="stage B steps (stage A runs half as many); default: the recipe's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps in this call")
    p.add_argument("--max-seconds", type=float, help="stop (with a checkpoint) after this long in this call")
    p.add_argument("--workers", type=int, help="data loader processes (default: 6 on CUDA, 0 on CPU)")
    p.add_argument("--eval-n", type=int, default=64, help="captions scored by the checker at the end (0: none)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    config = TOY_CONFIGS[args.config]
    tr = TRAIN_REHEARSAL if args.rehearsal else TRAIN_FULL
    if args.steps is not None:
        if args.steps < 2:
            raise SystemExit(f"--steps: expected >= 2, got {args.steps}")
        tr = replace(tr, steps_b=args.steps, steps_a=args.steps // 2)
    tr = replace(tr, seed=args.seed)
    est = estimate(config, tr)
    print(f"estimate: {json.dumps(est)}")
    print(f"train config: {json.dumps(asdict(tr))}")
    workers = args.workers if args.workers is not None else (6 if args.device.startswith("cuda") else 0)
    status = train(args.out, config, tr, args.device, args.stop_after, workers, max_seconds=args.max_seconds)
    print(f"training {status}: {args.out}")
    if status == "done" and args.eval_n > 0:
        toy = load(args.out, device=args.device)
        for name in presets("infinity"):
            print(f"checker ({name}, {args.eval_n} captions): {json.dumps(evaluate(toy, name, n=args.eval_n))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
