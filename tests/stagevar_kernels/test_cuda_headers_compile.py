"""Tier 4: the torch-free CUDA kernel headers compile with nvcc for sm_80 and sm_90 (no GPU needed).

Runs scripts/check_cuda_headers.sh (one nvcc call, both archs, warnings as errors) and its host Philox self-check,
whose words must equal stagevar_kernels.philox. Marked ``slow`` (about 10-60 s on a 2-core box): deselect with
``-m "not slow"``. Skipped when nvcc is not installed.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from stagevar_kernels import philox

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_cuda_headers.sh"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(NVCC is None, reason="nvcc not installed")]


def test_cuda_headers_compile_and_philox_matches():
    seed = 2**40 + 77  # both key words non-zero
    env = dict(os.environ, NVCC=NVCC, STAGEVAR_CHECK_SEED=str(seed))
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--philox"], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert proc.returncode == 0, f"nvcc failed:\n{proc.stdout}\n{proc.stderr}"
    assert "check_cuda_headers: OK (sm_80, sm_90)" in proc.stdout
    lines = proc.stdout.strip().splitlines()[-8:]
    got = torch.tensor([[int(v) for v in line.split()] for line in lines], dtype=torch.int64)
    i = torch.arange(8, dtype=torch.int64)
    want = torch.stack(philox.philox4x32(seed, i * 7 + 3, (i * 13) ^ 0xF0F0F0F0, i + 5, i * 0 + 1), dim=-1)
    assert torch.equal(got, want)
