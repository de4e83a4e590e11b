#!/usr/bin/env bash
# Every GPU check and measurement of this project in a few stages, each well inside the device tool's 10-minute
# limit per command; results land in $OUT (default ./gpu_results) for bench/RESULTS.md.
#   bash scripts/gpu_measure.sh build      # CUDA extension in place (TORCH_CUDA_ARCH_LIST=9.0) + import check
#   bash scripts/gpu_measure.sh tests      # the whole test suite on the GPU (CUDA tiers included) + sanitizer
#   bash scripts/gpu_measure.sh ops        # op microbenchmarks (pytest-benchmark JSON, device-event medians)
#   bash scripts/gpu_measure.sh e2e        # Infinity-2B b1 (every schedule and peer) and b4, side by side
#   bash scripts/gpu_measure.sh e2e_more   # Infinity-8B b1 and STAR b1
#   bash scripts/gpu_measure.sh all        # the four in order
# A fresh device machine has none of the build outputs: pass the stage list in one command, e.g. "build e2e".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu_results}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/python:$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

stage_build() {
    "$PY" -m pip install -q pytest pytest-benchmark 2>&1 | tail -1
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
        "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; return 1; }
    "$PY" -c "import torch, stagevar_kernels as s; print(torch.__version__, torch.cuda.get_device_name(), \
s.HAS_EXT, s.available_backends('cuda'))" | tee "$OUT/backends.txt"
}

stage_tests() {
    "$PY" -m pytest -q -rs -p no:cacheprovider tests > "$OUT/tests.log" 2>&1 || status=1
    tail -3 "$OUT/tests.log"
    bash scripts/run_sanitizer.sh > "$OUT/sanitizer.log" 2>&1 || status=1
    tail -3 "$OUT/sanitizer.log"
}

stage_ops() {
    "$PY" -m pytest bench -q -p no:cacheprovider --benchmark-json="$OUT/ops.json" \
        --benchmark-columns=median,iqr,rounds --benchmark-sort=name > "$OUT/ops.log" 2>&1 || status=1
    "$PY" - "$OUT/ops.json" <<'PYEOF' | tee "$OUT/ops_table.txt"
import json, sys
rows = json.load(open(sys.argv[1]))["benchmarks"]


def case(b):  # the case id inside [...] without the trailing "-<impl>"
    inner = b["name"].split("[", 1)[1][:-1]
    return inner[: -len(b["extra_info"].get("impl", "")) - 1]


copy = {case(b): b["extra_info"].get("gbps") for b in rows if b["extra_info"].get("impl") == "copy"}
print(f"{'benchmark':70s} {'median us (events)':>18s} {'GB/s':>8s} {'of copy':>8s}")
for b in rows:
    e = b.get("extra_info", {})
    ref = copy.get(case(b))
    share = f"{e['gbps'] / ref:8.0%}" if ref and e.get("gbps") else f"{'':8s}"
    print(f"{b['name']:70s} {e.get('median_us', float('nan')):18.1f} {e.get('gbps', float('nan')):8.1f} {share}")
PYEOF
}

stage_e2e() {  # Infinity-2B, batch 1 (every schedule and peer) and batch 4
    local all="vanilla,paper,paper-table7,skip-only,cfg-drop-only,fastvar,skipvar-skip1,skipvar-skip3,skipvar-cond3"
    "$PY" -m stagevar bench --model infinity-2b --batch-size 1 --schedules "$all" --json "$OUT/e2e_infinity2b_b1.json" \
        > "$OUT/e2e_infinity2b_b1.txt" 2>&1 || status=1
    "$PY" -m stagevar bench --model infinity-2b --batch-size 4 --schedules vanilla,paper,skip-only,cfg-drop-only,fastvar \
        --no-text-encoder --json "$OUT/e2e_infinity2b_b4.json" > "$OUT/e2e_infinity2b_b4.txt" 2>&1 || status=1
    tail -n 25 "$OUT"/e2e_infinity2b_*.txt
}

stage_e2e_more() {  # Infinity-8B and STAR, batch 1
    "$PY" -m stagevar bench --model infinity-8b --batch-size 1 --schedules vanilla,paper,paper-table7,skip-only,cfg-drop-only \
        --json "$OUT/e2e_infinity8b_b1.json" > "$OUT/e2e_infinity8b_b1.txt" 2>&1 || status=1
    "$PY" -m stagevar bench --model star-d30 --batch-size 1 --schedules vanilla,paper,skip-only,cfg-drop-only \
        --json "$OUT/e2e_star_b1.json" > "$OUT/e2e_star_b1.txt" 2>&1 || status=1
    tail -n 25 "$OUT"/e2e_infinity8b_b1.txt "$OUT"/e2e_star_b1.txt
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
[ "${stages[0]}" = all ] && stages=(build tests ops e2e e2e_more)
for s in "${stages[@]}"; do
    echo "== $s ($(date -u +%H:%M:%S)) =="
    "stage_$s" || status=1
done
exit $status
