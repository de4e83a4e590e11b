"""End-to-end latency harness (the same as `stagevar bench`): schedules side by side on one model.

    python bench/e2e.py --model infinity-2b --batch-size 1 --schedules vanilla,paper,skip-only,cfg-drop-only \
        --json infinity2b_b1.json

On a GPU, `--cuda-graphs` measures every schedule eager and graphed (two columns each, capture time apart). See
`stagevar.benchmark` for what is timed and how.
"""

import sys

from stagevar.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
