"""The torch-free CUDA kernel headers compile with nvcc for sm_80 and sm_90 (no GPU needed), and the parts
of the CUDA arithmetic that are plain host+device functions run on the CPU against the Python contract.

Runs scripts/check_cuda_headers.sh once (one nvcc call, both archs, warnings as errors, plus the host check binary
of csrc/check/compile_kernels.cu) and then that binary's three modes: the Philox words, the 16-bit operand splits
of the projection GEMM (bit for bit against torch's round-to-nearest-even conversions), and a serial replay of the
selection kernel's block algorithm with the kernel's own helpers (against ``philox.select_rows``). Marked ``slow``
(about 1-2 min on a 2-core box): deselect with ``-m "not slow"``. Skipped when nvcc is not installed.

Resource use of the kernels, sm_90, nvcc 13.0 (``nvcc -O2 -Xptxas -v -gencode arch=compute_90,code=sm_90 -c
csrc/check/compile_kernels.cu`` with the flags of the script), no spills anywhere:
project_prepare_kernel 62 (fp32) / 61 (fp16, bf16) registers, 32-byte stack frame (the slow-path argument
reduction of cosf/sinf, never taken for arguments in [0, 2 pi)); select_cast_kernel 32 registers, 17.5 KB static
shared memory; restore_merge_kernel 64-80 registers (16-byte path), 64 (element path).
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
SEED = 2**40 + 77  # both key words non-zero

pytestmark = [pytest.mark.slow, pytest.mark.skipif(NVCC is None, reason="nvcc not installed")]


@pytest.fixture(scope="module")
def host_check(tmp_path_factory):
    """Compile the headers (both archs) and the host check binary; returns (script stdout, binary path)."""
    binary = tmp_path_factory.mktemp("cuda_check") / "host_check"
    env = dict(os.environ, NVCC=NVCC, STAGEVAR_CHECK_SEED=str(SEED), STAGEVAR_HOST_CHECK_BIN=str(binary))
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--philox"], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    assert proc.returncode == 0, f"nvcc failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout, binary


def _run(binary, mode, numbers):
    proc = subprocess.run(
        [str(binary), mode], input=" ".join(str(int(v)) for v in numbers), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return [[int(v) for v in line.split()] for line in proc.stdout.strip().splitlines()]


def test_cuda_headers_compile_and_philox_matches(host_check):
    stdout, _ = host_check
    assert "check_cuda_headers: OK (sm_80, sm_90)" in stdout
    lines = stdout.strip().splitlines()[-8:]
    got = torch.tensor([[int(v) for v in line.split()] for line in lines], dtype=torch.int64)
    i = torch.arange(8, dtype=torch.int64)
    want = torch.stack(philox.philox4x32(SEED, i * 7 + 3, (i * 13) ^ 0xF0F0F0F0, i + 5, i * 0 + 1), dim=-1)
    assert torch.equal(got, want)


def _f32(values):
    return torch.tensor(values, dtype=torch.float32)


def _bits16(t):
    return t.view(torch.int16).to(torch.int64) & 0xFFFF


def _bits32(t):
    return t.view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def test_operand_splits_match_round_to_nearest(host_check):
    _, binary = host_check
    gen = torch.Generator().manual_seed(0)
    q = philox.projection_matrix(3, 1, 64, 40).flatten()  # real Q entries
    special = [0.0, -0.0, 1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-9, -2.5e-39, 1e-45, 3.0e38, 3.3961e38, 3.4028235e38,
               -3.4028235e38, float("inf"), float("-inf"), float("nan")]  # fmt: skip
    v = torch.cat([q, torch.randn(300, generator=gen) * 1e3, _f32(special)])
    got = torch.tensor(_run(binary, "split", [v.numel(), *_bits32(v).tolist()]), dtype=torch.int64)
    finite = torch.isfinite(v)
    # fp32 x: x0 = bf16 round-to-nearest-even, or toward zero where that overflows; x1 = bf16(x - x0),
    # x2 = bf16(x - x0 - x1) (0 for non-finite x); fin(x0).
    x0 = v.to(torch.bfloat16)
    overflow = finite & torch.isinf(x0.float())
    truncated = _bits32(v) & 0xFFFF0000
    truncated = torch.where(truncated >= 2**31, truncated - 2**32, truncated).to(torch.int32)
    x0 = torch.where(overflow, truncated.view(torch.float32).to(torch.bfloat16), x0)  # truncation is exact
    r1 = torch.where(finite, v - x0.float(), torch.zeros_like(v))
    x1 = r1.to(torch.bfloat16)
    x2 = (r1 - x1.float()).to(torch.bfloat16)
    fin0 = torch.where(finite, x0.float(), torch.zeros_like(v)).to(torch.bfloat16)
    assert overflow.sum() >= 2  # 3.4028235e38 and its negative
    nan = torch.isnan(v)
    assert torch.equal(got[~nan, 0], _bits16(x0)[~nan])
    assert ((got[nan, 0] & 0x7FFF) > 0x7F80).all()  # a bf16 NaN (payload bits differ between libraries)
    for col, want in ((1, x1), (2, x2), (3, fin0)):
        assert torch.equal(got[:, col], _bits16(want)), col
    # Q (always finite): q0 = G(v), q1 = G(v - q0), q2 = G(v - q0 - q1); three-way in bf16, two-way in fp16.
    qmask = finite & (v.abs() < 6e4)
    qv, rows = v[qmask], got[qmask]
    for first, count, dtype in ((4, 3, torch.bfloat16), (7, 2, torch.float16)):
        rest = qv
        for k in range(count):
            part = rest.to(dtype)
            assert torch.equal(rows[:, first + k], _bits16(part)), (dtype, k)
            rest = rest - part.float()


def _orderable_u32(keys):
    """uint32 key bits of csrc's orderable_key_bits: philox.orderable_keys' signed int32 order, sign bit flipped."""
    bits = keys.view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31


@pytest.mark.parametrize(
    "rows,rank,kind",
    [(1, 1, "real"), (7, 3, "ties"), (513, 512, "real"), (1600, 282, "real"), (1600, 282, "ties"),
     (2304, 400, "neg_inf"), (4096, 700, "real"), (5000, 4999, "ties"), (5000, 1, "neg_inf")],
)  # fmt: skip
def test_selection_block_algorithm_matches_contract(host_check, rows, rank, kind):
    _, binary = host_check
    gen = torch.Generator().manual_seed(rows + rank)
    w = torch.rand(1, rows, generator=gen) * 10
    if kind == "ties":
        w = torch.randint(1, 4, (1, rows), generator=gen).float()  # many equal norms ...
    if kind == "neg_inf":
        w[:, torch.randperm(rows, generator=gen)[: rows * 3 // 4]] = 0.0  # most rows drawn last, lowest first
    g = philox.gumbel_noise(9, 1, rows)
    if kind == "ties":
        g = torch.zeros_like(g)  # ... and no noise: exact ties everywhere, broken by the lowest index
    keys = philox.sampling_keys(w, g)
    got = _run(binary, "select", [rows, rank, *_orderable_u32(keys[0]).tolist()])
    assert torch.equal(torch.tensor(got[0]), philox.select_rows(keys, rank)[0])
