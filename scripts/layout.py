"""Print the repository's layout: every folder and package, and each file with the first sentence of its docstring
or leading comment. The README's Layout section is this output (``python3 scripts/layout.py``)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 120  # the project's line length
NAME_COLUMN = 32  # the longest file name (bench_project_and_sample.py) indented, and two spaces
SOURCE_SUFFIXES = (".py", ".cpp", ".cu", ".cuh", ".sh", ".md")
SKIPPED = {"__pycache__", "build", "dist", "gpu_results", "third_party", "out"}  # build outputs, ignored by git
FILES_NOT_LISTED = ("tests",)  # test folders mirror the sources: listed as folders only
# Folders without a docstring of their own (no __init__.py, conftest.py or README.md).
FOLDER_NOTES = {
    ".ci": "CI on a clean CPU-only clone",
    "bench": "op microbenchmarks (pytest-benchmark), the end-to-end runner and the recorded figures",
    "csrc": "the C++/CUDA extension stagevar_kernels._C",
    "csrc/check": "torch-free compile check of the kernel headers",
    "csrc/cuda": "launchers: torch tensors in, one kernel per op",
    "csrc/include": "the include path of the extension build",
    "csrc/include/stagevar": "the torch-free CUDA kernels, one header per kernel",
    "python": "the method package's source root",
    "scripts": "install, the GPU check and the CUDA header check",
    "tests": "pytest suite; its folders mirror the source tree",
    "tests/official": "against the official Infinity, STAR-T2I and FastVAR code (skipped without their source trees)",
}


def _skipped(path: Path) -> bool:
    rel = path.relative_to(ROOT).parts
    return any(p in SKIPPED or p.endswith(".egg-info") or (p.startswith(".") and p != ".ci") for p in rel)


def folders() -> list[Path]:
    """Every folder of the tree holding source files (or other folders that do), sorted, the root excluded."""
    found = set()
    for path in ROOT.rglob("*"):
        if path.is_file() and not _skipped(path) and (path.suffix in SOURCE_SUFFIXES or path.parent.name == ".ci"):
            parent = path.parent
            while parent != ROOT:
                found.add(parent)
                parent = parent.parent
    return sorted(found, key=lambda p: p.relative_to(ROOT).as_posix())


def _first_sentence(text: str) -> str:
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    return re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0]


def _leading_comment(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#!"):
            continue
        stripped = line.strip()
        if stripped.startswith(("//", "#")) and not stripped.startswith("#include"):
            body = stripped.lstrip("/#").strip()
            if not body:
                break
            lines.append(body)
        else:
            break
    return "\n".join(lines)


def describe(path: Path) -> str:
    """First sentence of a file's docstring, leading comment or (Markdown) first line; a folder's from
    ``FOLDER_NOTES``, its ``__init__.py`` or ``README.md``, or, for a test folder, the source folder it mirrors."""
    if path.is_dir():
        rel = path.relative_to(ROOT).as_posix()
        if rel in FOLDER_NOTES:
            return FOLDER_NOTES[rel]
        for name in ("__init__.py", "README.md"):
            if (path / name).is_file():
                return describe(path / name)
        source = rel.removeprefix("tests/")
        for mirrored in (source, "python/" + source):
            if rel.startswith("tests/") and (ROOT / mirrored).is_dir():
                return f"tests of {mirrored}/"
        return ""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        doc = ast.get_docstring(ast.parse(text)) or ""
        return _first_sentence(doc) if doc else _first_sentence(_leading_comment(path))
    if path.suffix == ".md":
        body = [line for line in text.splitlines() if line.strip()]
        return body[0].lstrip("# ").strip() if body else ""
    return _first_sentence(_leading_comment(path))


def _balanced(text: str) -> bool:
    return text.count("(") == text.count(")") and text.count("`") % 2 == 0


def _line(name: str, text: str) -> str:
    """``name`` and ``text`` on one line of at most ``WIDTH``: a long ``text`` is cut at the last clause boundary
    that fits (``:``, ``;``, ``,``, `` (``) if that keeps half of the room, else at a word, with `` ...``."""
    lead = f"{name:<{NAME_COLUMN}}" if len(name) < NAME_COLUMN else f"{name}  "
    room = WIDTH - len(lead)
    if len(text) > room:
        cuts = [m.start() for m in re.finditer(r": |; |, | \(", text) if m.start() <= room]
        fits = [c for c in cuts if _balanced(text[:c]) and c >= room // 2]
        text = text[: max(fits)] if fits else text[: room - 4].rsplit(" ", 1)[0] + " ..."
    return (lead + text).rstrip()


def _files(folder: Path) -> list[Path]:
    rel = folder.relative_to(ROOT).parts
    if rel and rel[0] in FILES_NOT_LISTED:
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.suffix in SOURCE_SUFFIXES or folder.name == ".ci") and p.name != "__init__.py"
    )


def layout() -> list[str]:
    """The layout, one line per folder (its path, ending in ``/``) and per file below it (indented)."""
    out = []
    for folder in folders():
        out.append(_line(folder.relative_to(ROOT).as_posix() + "/", describe(folder)))
        out.extend(_line("  " + f.name, describe(f)) for f in _files(folder))
    return out


if __name__ == "__main__":
    sys.stdout.write("\n".join(layout()) + "\n")
