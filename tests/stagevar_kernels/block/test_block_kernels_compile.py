"""Without a GPU, compile every block kernel for sm_90 (H100/H200) in a subprocess: catches what the interpreter
cannot (lowering and ptxas errors, 64-bit index arithmetic, integer arguments specialised to constants).

The interpreter switch is read at import, so the kernels are imported there without ``TRITON_INTERPRET``. The
script prints each kernel's ptxas register count (recorded in the kernel modules' block-size comments)."""

import pytest
import torch

from stagevar_kernels.testing import run_compiled_triton_script, triton_nvidia_backend_available

pytest.importorskip("triton")

_AOT_SCRIPT = r"""
import re, subprocess, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource
from stagevar_kernels.block.triton import bit_pair_probs, norm_modulate, qk_norm_rope, residual_gate

target = GPUTarget("cuda", 90, 32)
ptxas = get_ptxas(90).path
FLOATS = {"eps", "scale", "threshold"}


def compile_one(mod, fn, ptrs, consts, num_warps, int_type):
    sig, constexprs = {}, dict(consts)
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in ptrs:
            sig[name] = "*" + ptrs[name]
        elif name in FLOATS:
            sig[name] = "fp32"
        elif int_type == 1:  # Triton specialises integer arguments equal to 1 into constants
            sig[name], constexprs[name] = "constexpr", 1
        else:
            sig[name] = int_type
    assert not mod.INTERPRETING
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=target,
                            options={"num_warps": num_warps, "enable_fp_fusion": False})
    assert kernel.asm["cubin"]
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(kernel.asm["ptx"])
        f.flush()
        done = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", f.name, "-o", "/dev/null"],
                              capture_output=True, text=True, check=True)
    regs = re.search(r"Used (\d+) registers", done.stderr).group(1)
    spill = re.search(r"(\d+) bytes spill stores", done.stderr).group(1)
    return regs, spill


for dt, int_type in [("fp32", "i32"), ("bf16", "i64"), ("fp16", 1)]:
    bn, bc, nw = norm_modulate._blocks(4096, 2048)
    out = compile_one(norm_modulate, norm_modulate._norm_modulate_kernel,
                      {"x_ptr": dt, "w_ptr": "fp32", "b_ptr": "fp32", "scale_ptr": "fp32", "shift_ptr": "fp32",
                       "out_ptr": "bf16"},
                      {"HAS_W": True, "HAS_B": True, "MODULATE": True, "BLOCK_N": bn, "BLOCK_C": bc}, nw, int_type)
    print("norm_modulate", dt, int_type, *out)
    for rope_first in (False, True):
        bh, bp, nw = qk_norm_rope._blocks(16, 64)
        ptrs = {"qkv_ptr": dt, "scale_ptr": "fp32", "cos_ptr": "fp32", "sin_ptr": "fp32", "q_ptr": dt,
                "k_ptr": dt, "v_ptr": dt}
        consts = {"ROPE": True, "ROPE_FIRST": rope_first, "ROUND_NORM": rope_first, "BLOCK_H": bh, "BLOCK_P": bp}
        out = compile_one(qk_norm_rope, qk_norm_rope._qk_norm_rope_kernel, ptrs, consts, nw, int_type)
        print("qk_norm_rope", dt, int_type, rope_first, *out)
    for mode in (0, 1, 2):
        bl, bc, nw = residual_gate._blocks(4096, 2048)
        ptrs = {"x_ptr": "fp32", "y_ptr": dt, "g_ptr": "fp32", "out_ptr": "fp32"}
        consts = {"MODE": mode, "SCALED": True, "BLOCK_L": bl, "BLOCK_C": bc}
        out = compile_one(residual_gate, residual_gate._residual_gate_kernel, ptrs, consts, nw, int_type)
        print("residual_gate", dt, int_type, mode, *out)
for int_type in ["i64", 1]:
    block, nw = bit_pair_probs._block(1 << 18)
    out = compile_one(bit_pair_probs, bit_pair_probs._bit_pair_probs_kernel, {"logits_ptr": "fp32", "out_ptr": "fp32"},
                      {"TOP_K1": True, "TOP_P": True, "BLOCK": block}, nw, int_type)
    print("bit_pair_probs", int_type, *out)
print("compiled")
"""


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the kernel tests run the compiled kernels")
@pytest.mark.skipif(not triton_nvidia_backend_available(), reason="Triton's NVIDIA backend (ptxas) is not installed")
def test_block_kernels_compile_for_sm90():
    done = run_compiled_triton_script(_AOT_SCRIPT)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-4000:]
