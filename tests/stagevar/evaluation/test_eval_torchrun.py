"""Data-parallel ``stagevar eval`` under torchrun with 2 gloo processes equals a single-process run, bit for bit.

Marked ``slow``: torchrun starts three interpreters (about 20 s of CPU on a 2-core machine).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchmetrics")

ROOT = Path(__file__).resolve().parents[3]
ARGS = ["eval", "--random", "infinity-tiny", "--device", "cpu", "--warmup", "0", "--grid-prompts", "0"]
ARGS += ["--prompt", "a red cube", "--prompt", "two cats", "--prompt", "a blue sky", "--schedules", "skipvar-skip3"]


def _run(prefix: list[str], out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT / 'python'}{os.pathsep}{ROOT}")
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(
        prefix + ARGS + ["--out", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "eval.json").read_text())


def _pngs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tmp_path):
    from stagevar import cli

    assert cli.main(ARGS + ["--out", str(tmp_path / "single")]) == 0  # in this process, on one thread (conftest)
    single = json.loads((tmp_path / "single" / "eval.json").read_text())
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "stagevar",
    ]
    multi = _run(torchrun, tmp_path / "multi")
    assert multi["world_size"] == 2 and single["world_size"] == 1
    pngs = _pngs(tmp_path / "single")
    assert sorted(pngs) == [f"{s}/{i:05d}.png" for s in ("skipvar-skip3", "vanilla") for i in range(3)]
    assert _pngs(tmp_path / "multi") == pngs  # the union of both ranks' outputs, byte for byte
    assert multi["images"] == single["images"]  # metrics merged on rank 0, in prompt order
    assert multi["schedules"]["vanilla"]["timed_generations"] == 3  # both ranks' timings merged
