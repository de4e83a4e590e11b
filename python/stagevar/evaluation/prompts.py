"""Prompt sources: plain text, GenEval's metadata JSONL and DPG-Bench's prompt folder, read from the user's copies.

- GenEval (``prompts/evaluation_metadata.jsonl`` of djghosh13/geneval): one JSON object per line with a ``prompt``
  field and tags (``tag``, ``include``, ...); a prompt's index is its line number (0-based) and the record is
  written back, unchanged, beside its images (the evaluator reads the tags from there).
- DPG-Bench (``dpg_bench/prompts/`` of TencentQQGYLab/ELLA): one ``<id>.txt`` per prompt; the evaluator finds a
  prompt's questions by the image's file name, so the id is kept; prompts are ordered by id (numeric ids
  numerically) so that indices, and therefore seeds, do not depend on the file system's listing order.
- plain text: one prompt per line (blank lines ignored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PromptRecord:
    """One prompt: its position in the source (seeds derive from it), text, id (file stem) and source metadata."""

    index: int
    prompt: str
    key: str
    metadata: dict = field(default_factory=dict, compare=False)


def _file(path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return p


def read_geneval(path) -> list[PromptRecord]:
    """Records of a GenEval metadata JSONL file (``evaluation_metadata.jsonl``)."""
    records = []
    lines = _file(path, "--geneval-prompts file").read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"--geneval-prompts: line {n + 1} of {path} is not JSON ({err.msg})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("prompt"), str):
            raise ValueError(f'--geneval-prompts: line {n + 1} of {path} has no "prompt" string')
        index = len(records)
        records.append(PromptRecord(index, meta["prompt"], f"{index:05d}", meta))
    if not records:
        raise ValueError(f"--geneval-prompts: no prompt records in {path}")
    return records


def _id_order(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def read_dpg(folder) -> list[PromptRecord]:
    """Records of a DPG-Bench prompt folder (one ``<id>.txt`` per prompt), ordered by id."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--dpg-prompts folder not found: {folder}")
    files = sorted(root.glob("*.txt"), key=lambda p: _id_order(p.stem))
    if not files:
        raise ValueError(f"--dpg-prompts: no .txt prompt files in {folder}")
    records = []
    for index, path in enumerate(files):
        text = " ".join(path.read_text(encoding="utf-8").split())
        if not text:
            raise ValueError(f"--dpg-prompts: {path} is empty")
        records.append(PromptRecord(index, text, path.stem))
    return records


def read_plain(path) -> list[PromptRecord]:
    """Records of a text file with one prompt per line."""
    lines = [line.strip() for line in _file(path, "prompts file").read_text(encoding="utf-8").splitlines()]
    return from_strings([line for line in lines if line])


def from_strings(prompts: list[str]) -> list[PromptRecord]:
    return [PromptRecord(i, p, f"{i:05d}") for i, p in enumerate(prompts)]


def from_args(args) -> tuple[list[PromptRecord], str]:
    """The prompts named by ``--geneval-prompts``, ``--dpg-prompts`` or ``--prompt``/``--prompts-file``, and the
    source kind (``geneval``, ``dpg`` or ``plain``); exactly one kind may be given."""
    geneval, dpg = getattr(args, "geneval_prompts", None), getattr(args, "dpg_prompts", None)
    plain = list(getattr(args, "prompt", None) or [])
    given = [name for name, v in (("--geneval-prompts", geneval), ("--dpg-prompts", dpg)) if v]
    if plain or getattr(args, "prompts_file", None):
        given.append("--prompt/--prompts-file")
    if len(given) > 1:
        raise ValueError(f"prompts: give one source, got {' and '.join(given)}")
    if geneval:
        return read_geneval(geneval), "geneval"
    if dpg:
        return read_dpg(dpg), "dpg"
    if getattr(args, "prompts_file", None):
        plain += [r.prompt for r in read_plain(args.prompts_file)]
    if not plain:
        raise ValueError("prompts: give --prompt, --prompts-file, --geneval-prompts or --dpg-prompts")
    return from_strings(plain), "plain"
