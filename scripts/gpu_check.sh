#!/usr/bin/env bash
# The project's one GPU check (DEVELOPING.md): build, GPU tests, compute-sanitizer, op microbenchmarks and end to
# end in at most 8 minutes on an H200, results in $OUT (default ./gpu_results) after every stage.
#   bash scripts/gpu_check.sh              # on the device machine
#   bash scripts/gpu_check.sh --dry-run    # the CPU rehearsal (CI runs it)
# Options: python3 scripts/gpu_check.py --help.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
