"""Packaging: what setup.py ships, and the package importing without its optional parts."""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_folder_is_a_shipped_package():
    shipped = set(find_packages(where=str(ROOT / "python"), include=["stagevar", "stagevar.*"]))
    shipped |= set(find_packages(where=str(ROOT), include=["stagevar_kernels", "stagevar_kernels.*"]))
    folders = {
        ".".join(p.relative_to(base).parts)
        for base, top in ((ROOT / "python", "stagevar"), (ROOT, "stagevar_kernels"))
        for p in (base / top).rglob("*")
        if p.is_dir() and any(p.glob("*.py")) and "__pycache__" not in p.parts
    } | {"stagevar", "stagevar_kernels"}
    assert folders <= shipped, f"folders with Python files that setup.py would not ship: {sorted(folders - shipped)}"


def test_imports_without_the_extension_and_without_triton():
    # torchao's rule: the package imports when the binary extension (or Triton) is missing.
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import stagevar_kernels as sk, torch\n"
        "assert not sk.HAS_EXT and sk.available_backends('cpu') == ['reference']\n"
        "x = torch.randn(1, 9, 4); xr, idx = sk.project_and_sample(x, 3, 0)\n"
        "import stagevar; print('ok')\n"
    )
    env = dict(os.environ, STAGEVAR_SKIP_EXT="1", TRITON_INTERPRET="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_import_does_not_initialise_cuda():
    code = "import torch, stagevar_kernels, stagevar; print(torch.cuda.is_initialized())"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
