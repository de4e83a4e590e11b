#!/usr/bin/env bash
# compute-sanitizer over the CUDA C++ ops (backend="cuda") on a GPU machine; fails (non-zero exit) on any report.
#   1. memcheck  over all of tests/stagevar_kernels/test_cuda_ops.py (out-of-bounds / misaligned accesses; the
#      restore tests include out-of-range and duplicate indices);
#   2. racecheck over the kernels with shared memory (the projection tiles, the radix select) on the small cases;
#   3. synccheck and initcheck (reads of uninitialised global memory, e.g. an unwritten workspace) on the same.
# PYTORCH_NO_CUDA_MEMORY_CACHING=1 gives every tensor its own cudaMalloc, so an overrun of a tensor is reported
# instead of landing silently in the caching allocator's pool. Usage: scripts/run_sanitizer.sh [extra pytest args]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
SANITIZER="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || true)}"
if [[ -z "${SANITIZER}" && -n "${CUDA_HOME:-}" && -x "${CUDA_HOME}/bin/compute-sanitizer" ]]; then
  SANITIZER="${CUDA_HOME}/bin/compute-sanitizer"
fi
if [[ -z "${SANITIZER}" && -x /usr/local/cuda/bin/compute-sanitizer ]]; then SANITIZER=/usr/local/cuda/bin/compute-sanitizer; fi
if [[ -z "${SANITIZER}" ]]; then
  echo "run_sanitizer: compute-sanitizer not found (set COMPUTE_SANITIZER or CUDA_HOME)" >&2
  exit 2
fi
PY="${PYTHON:-python}"
"${PY}" - <<'PYEOF'
import sys, torch, stagevar_kernels
if not torch.cuda.is_available() or "cuda" not in stagevar_kernels.available_backends("cuda"):
    sys.exit("run_sanitizer: needs a GPU and stagevar_kernels._C built with CUDA (pip install --no-build-isolation .)")
PYEOF

export PYTORCH_NO_CUDA_MEMORY_CACHING=1
TESTS=tests/stagevar_kernels/test_cuda_ops.py
# -p no:cacheprovider: nothing written into the tree; -x: stop at the first failure so the report is short.
PYTEST=("${PY}" -m pytest -q -x -p no:cacheprovider "${TESTS}" "$@")
SAN=("${SANITIZER}" --error-exitcode 1 --print-limit 20 --target-processes all)

# The heavier tools check only our kernels (the namespace stagevar is in every mangled name); torch's own
# kernels (the reference path in the same tests) are left to memcheck.
FILTER=()
if "${SANITIZER}" --help 2>/dev/null | grep -q -- "--kernel-name"; then FILTER=(--kernel-name kns=stagevar); fi

run() {
  echo "=== run_sanitizer: $* ==="
  "$@"
}

# The Infinity-2B-size case and CUDA-graph capture are slow or unsupported under the heavier tools.
run "${SAN[@]}" --tool memcheck --leak-check no "${PYTEST[@]}" -k "not infinity_2b and not cuda_graph"
SMALL=(-k "project_small or restore_small")
run "${SAN[@]}" "${FILTER[@]}" --tool racecheck --racecheck-report all "${PYTEST[@]}" "${SMALL[@]}"
run "${SAN[@]}" "${FILTER[@]}" --tool synccheck "${PYTEST[@]}" "${SMALL[@]}"
run "${SAN[@]}" "${FILTER[@]}" --tool initcheck "${PYTEST[@]}" "${SMALL[@]}"
echo "run_sanitizer: all clean"
