#!/usr/bin/env bash
# Set-up on a machine with Python >= 3.10 and pip: torch (kept if present, else torch 2.13.0), Triton 3.6
# (what the GPU machines have; 3.9 removed block pointers), and this project with its extension.
#   bash scripts/install.sh          # runtime
#   bash scripts/install.sh --dev    # plus the test and benchmark tools
# Install the torch you want first (see the README); without one, torch 2.13.0 comes from your package index, or
# from TORCH_INDEX_URL when set (e.g. https://download.pytorch.org/whl/cpu for the CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --quiet --disable-pip-version-check"

if ! "$PY" -c "import torch" 2>/dev/null; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        $PIP "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
    else
        $PIP "torch==2.13.0"   # pinned: a bare `torch` would pull the newest release
    fi
fi
$PIP "triton==3.6.*" numpy pillow tqdm setuptools wheel ninja
if [ "${1:-}" = "--dev" ]; then
    $PIP pytest pytest-benchmark ruff "transformers>=4.44" sentencepiece safetensors einops "torchmetrics>=1.0"
fi
# torch is not a build requirement (an isolated build would fetch CUDA torch): build against the installed one.
MAX_JOBS=${MAX_JOBS:-2} $PIP --no-build-isolation -e .
"$PY" -c "import stagevar, stagevar_kernels; print('stagevar', stagevar.__version__, '| extension:', stagevar_kernels.HAS_EXT, '| backends on cpu:', stagevar_kernels.available_backends('cpu'))"
