"""README's Layout section lists every folder of the tree: every package, every top-level folder, every other folder
holding source files (``scripts/layout.py`` prints the section)."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout_module():
    spec = importlib.util.spec_from_file_location("layout", ROOT / "scripts" / "layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_layout_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Layout\n(.*?)(?=^## )", readme, flags=re.S | re.M)
    assert section, "README.md has no '## Layout' section"
    block = re.search(r"^```\n(.*?)^```", section.group(1), flags=re.S | re.M)
    assert block, "README's Layout section has no code block"
    return block.group(1).splitlines()


def _listed_folders() -> set[str]:
    return {line.split()[0] for line in _readme_layout_lines() if line and not line.startswith(" ")}


def test_every_package_is_in_the_readme_layout():
    layout = _layout_module()
    packages = {
        p.parent.relative_to(ROOT).as_posix() + "/"
        for p in ROOT.rglob("__init__.py")
        if not layout._skipped(p) and p.relative_to(ROOT).parts[0] != "tests"
    }
    assert {"stagevar_kernels/", "python/stagevar/", "stagevar_kernels/block/triton/"} <= packages
    missing = sorted(packages - _listed_folders())
    assert not missing, f"packages missing from README's Layout section (run scripts/layout.py): {missing}"


def test_every_top_level_folder_is_in_the_readme_layout():
    layout = _layout_module()
    top = {p.name + "/" for p in ROOT.iterdir() if p.is_dir() and not layout._skipped(p)}
    assert {"bench/", "csrc/", "python/", "scripts/", "stagevar_kernels/", "tests/"} <= top
    missing = sorted(top - _listed_folders())
    assert not missing, f"top-level folders missing from README's Layout section (run scripts/layout.py): {missing}"


def test_every_folder_the_script_prints_is_in_the_readme_layout():
    printed = {line.split()[0] for line in _layout_module().layout() if not line.startswith(" ")}
    assert "csrc/check/" in printed and "tests/official/" in printed
    missing = sorted(printed - _listed_folders())
    assert not missing, f"folders missing from README's Layout section (run scripts/layout.py): {missing}"


def test_the_script_fits_the_line_length_and_describes_every_file():
    layout = _layout_module()
    lines = layout.layout()
    assert all(len(line) <= layout.WIDTH for line in lines), [line for line in lines if len(line) > layout.WIDTH]
    files = [line.split(None, 1) for line in lines if line.startswith("  ")]
    assert files and all(len(parts) == 2 for parts in files), [p[0] for p in files if len(p) < 2]
