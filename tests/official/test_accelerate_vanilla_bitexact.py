"""``accelerate(official_model, "vanilla")`` gives the official ``autoregressive_infer_cfg`` images bit for bit.

The official Infinity code runs cross-attention in bf16 (it casts before ``flash_attn``) on every device; the
accelerated entry point of an official object must do the same (skipped unless INFINITY_REPO is set).
"""

import os
import sys

import pytest
import torch

REPO = os.environ.get("INFINITY_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="INFINITY_REPO not set (path of an official Infinity source tree)")

sys.path.insert(0, os.path.dirname(__file__))
from infinity_tiny import build_official, random_text, tiny_scales  # noqa: E402

import stagevar  # noqa: E402


@pytest.mark.parametrize("insertion", [0, -2])
def test_vanilla_accelerate_equals_the_official_call_bit_for_bit(infinity_official, insertion):
    omodel, ovae = build_official(infinity_official, patchify=False, seed=2)
    sched = tiny_scales()
    n = len(sched)
    call = dict(
        vae=ovae,
        scale_schedule=sched,
        label_B_or_BLT=random_text([6]).as_upstream(),
        B=1,
        g_seed=13,
        cfg_list=[3.0] * n,
        tau_list=[0.5] * n,
        top_k=900,
        top_p=0.97,
        cfg_insertion_layer=[insertion],
        vae_type=8,
        ret_img=True,
        returns_vemb=1,  # the official scripts' arguments (the other branch indexes a wrapper it lacks)
        inference_mode=True,
    )
    with torch.no_grad():
        _, _, want = omodel.autoregressive_infer_cfg(**call)  # the official method
        with stagevar.accelerated(omodel, "vanilla"):
            _, _, got = omodel.autoregressive_infer_cfg(**call)
    assert got.dtype == want.dtype == torch.uint8 and torch.equal(got, want)
