#!/usr/bin/env bash
# Compile the torch-free CUDA kernel headers (csrc/include/stagevar/*.cuh) for sm_80 and sm_90 without a GPU,
# through csrc/check/compile_kernels.cu, which instantiates every kernel for every dtype. Warnings are errors.
# With --philox it also builds and runs the host Philox self-check (prints 8 lines of 4 uint32 words for
# seed $STAGEVAR_CHECK_SEED, default 0); when $STAGEVAR_HOST_CHECK_BIN is set, the host check binary is kept at that
# path (its `split` and `select` modes replay the kernels' operand split and row selection on the CPU). With --launchers it also compiles csrc/cuda/*.cu (the torch launchers)
# against the installed torch's headers for sm_90, even with a CPU-only torch: its wheel ships the c10/cuda
# headers but not the generated c10/cuda/impl/cuda_cmake_macros.h, for which a one-line stub is supplied (about
# a minute per file on 2 cores). Without nvcc it says so and exits 0 (CPU CI boxes may lack a toolkit).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# $NVCC wins when set (an empty or missing path means "no nvcc": the check is skipped), then PATH, then CUDA_HOME.
if [[ -z "${NVCC+x}" ]]; then
  NVCC="$(command -v nvcc || true)"
  if [[ -z "${NVCC}" && -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"; fi
fi
if [[ -z "${NVCC}" || ! -x "${NVCC}" ]]; then
  echo "check_cuda_headers: nvcc not found; skipping the CUDA header compile check"
  exit 0
fi

OUT_DIR="$(mktemp -d)"
trap 'rm -rf "${OUT_DIR}"' EXIT

# The same defines as torch.utils.cpp_extension's nvcc flags, so the check sees what the extension build sees.
FLAGS=(
  -std=c++17 -O2 -I"${ROOT}/csrc/include"
  --expt-relaxed-constexpr
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
  -D__CUDA_NO_HALF2_OPERATORS__
  -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror,-Wno-unknown-pragmas
)

echo "check_cuda_headers: $("${NVCC}" --version | tail -n 1)"
set -x
"${NVCC}" "${FLAGS[@]}" \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  -c "${ROOT}/csrc/check/compile_kernels.cu" -o "${OUT_DIR}/compile_kernels.o"
{ set +x; } 2>/dev/null
echo "check_cuda_headers: OK (sm_80, sm_90)"

for arg in "$@"; do
  case "${arg}" in
    --philox)
      "${NVCC}" "${FLAGS[@]}" -DSTAGEVAR_CHECK_MAIN -gencode arch=compute_80,code=sm_80 \
        "${ROOT}/csrc/check/compile_kernels.cu" -o "${OUT_DIR}/philox_check"
      "${OUT_DIR}/philox_check" "${STAGEVAR_CHECK_SEED:-0}"
      if [[ -n "${STAGEVAR_HOST_CHECK_BIN:-}" ]]; then cp "${OUT_DIR}/philox_check" "${STAGEVAR_HOST_CHECK_BIN}"; fi
      ;;
    --launchers)
      PY="${PYTHON:-python}"
      mapfile -t TORCH_INC < <("${PY}" -c "from torch.utils import cpp_extension as c; print(*c.include_paths(), sep='\n')")
      PY_INC="$("${PY}" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
      STD="$("${PY}" -c "import torch; print('c++20' if tuple(map(int, torch.__version__.split('.')[:2])) >= (2, 10) else 'c++17')")"
      INC=(-I"${ROOT}/csrc/include" -I"${PY_INC}")
      for d in "${TORCH_INC[@]}"; do INC+=(-I"${d}"); done
      if [[ ! -f "${TORCH_INC[0]}/c10/cuda/impl/cuda_cmake_macros.h" ]]; then
        mkdir -p "${OUT_DIR}/stub/c10/cuda/impl"
        printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"${OUT_DIR}/stub/c10/cuda/impl/cuda_cmake_macros.h"
        INC+=(-I"${OUT_DIR}/stub")
        echo "check_cuda_headers: CPU-only torch: stubbing c10/cuda/impl/cuda_cmake_macros.h"
      fi
      for cu in "${ROOT}"/csrc/cuda/*.cu; do
        echo "check_cuda_headers: compiling launcher $(basename "${cu}")"
        "${NVCC}" -std="${STD}" -O2 "${INC[@]}" --expt-relaxed-constexpr -DSTAGEVAR_WITH_CUDA=1 \
          -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__ \
          -D__CUDA_NO_HALF2_OPERATORS__ -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C \
          -Xcompiler -fPIC -gencode arch=compute_90,code=sm_90 -c "${cu}" -o "${OUT_DIR}/$(basename "${cu}").o"
      done
      echo "check_cuda_headers: launchers OK (sm_90)"
      ;;
    *)
      echo "check_cuda_headers: unknown argument ${arg} (expected --philox and/or --launchers)" >&2
      exit 2
      ;;
  esac
done
