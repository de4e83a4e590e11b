"""The toy recipe on a GPU (skipped without CUDA): bf16 autocast training, data-loader workers, resume, loading."""

import json
import os

import pytest
import torch

from stagevar.toy import TOY64_REHEARSAL, TRAIN_REHEARSAL, evaluate, load
from stagevar.toy.train import WEIGHT_FILES, train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_rehearsal_trains_resumes_and_generates_on_cuda(tmp_path):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    quiet = {"echo": lambda s: None, "device": "cuda", "workers": 2}
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train(whole, TOY64_REHEARSAL, TRAIN_REHEARSAL, **quiet) == "done"
    assert train(parts, TOY64_REHEARSAL, TRAIN_REHEARSAL, stop_after=4, **quiet) == "stopped"
    assert train(parts, TOY64_REHEARSAL, TRAIN_REHEARSAL, **quiet) == "done"
    log = [json.loads(x) for x in (whole / "train_log.jsonl").open()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    from safetensors.torch import load_file

    # deterministic algorithms are warn-only on CUDA (some backward kernels accumulate atomically): the resumed run
    # equals the uninterrupted one up to such rounding
    for name in WEIGHT_FILES:
        a, b = load_file(str(whole / name)), load_file(str(parts / name))
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] - b[k]).norm() <= 1e-2 * a[k].norm() + 1e-6, (name, k)
    toy = load(whole, device="cuda")
    assert toy.new_session(batch=2, seed=0).device.type == "cuda"
    scores = evaluate(toy, "paper", n=4, batch=4)
    assert all(0 <= v <= 1 for k, v in scores.items() if k != "n")
