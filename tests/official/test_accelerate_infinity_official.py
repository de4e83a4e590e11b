"""accelerate()/restore() on an object of the OFFICIAL Infinity class (skipped unless INFINITY_REPO is set).

The accelerated ``autoregressive_infer_cfg`` of the official object must give what our own class gives with the
same weights and the same call, ``restore`` must bring back the official method, and the ``vanilla`` schedule
through ``accelerate`` must equal our plain loop on the official object.
"""

import os
import sys

import pytest
import torch

REPO = os.environ.get("INFINITY_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="INFINITY_REPO not set (path of an official Infinity source tree)")

sys.path.insert(0, os.path.dirname(__file__))
from infinity_tiny import build_official, ours_from_official, random_text, tiny_scales  # noqa: E402

import stagevar  # noqa: E402
from stagevar.models.common import run_plain  # noqa: E402
from stagevar.models.infinity.official import official_call  # noqa: E402


def _call(text, vae, seed=3):
    sched = tiny_scales()
    return dict(
        vae=vae,
        scale_schedule=sched,
        label_B_or_BLT=text.as_upstream(),
        B=1,
        g_seed=seed,
        cfg_list=[3.0] * len(sched),
        tau_list=[0.5] * len(sched),
        top_k=900,
        top_p=0.97,
        cfg_insertion_layer=0,
        vae_type=8,
        ret_img=True,
    )


@pytest.mark.parametrize("schedule", ["paper", "cfg-drop-only"])
def test_accelerated_official_object_equals_our_class(infinity_official, tmp_path, schedule):
    omodel, ovae = build_official(infinity_official, patchify=False, seed=0)
    model, vae = ours_from_official(omodel, ovae, "tiny", tmp_path)
    text = random_text([5])
    official_method = omodel.autoregressive_infer_cfg
    with stagevar.accelerated(omodel, schedule):
        assert omodel.autoregressive_infer_cfg is not official_method
        _, _, theirs = omodel.autoregressive_infer_cfg(**_call(text, ovae))
    # Our class keeps fp32 cross-attention; the official object runs it in bf16 as upstream: compare with the same.
    from stagevar.models.infinity import new_session

    session = new_session(
        model, vae, tiny_scales(), text, seeds=3, cfg_list=3.0, tau_list=0.5, cfg_insertion_layer=0, ca_bf16=True
    )
    ours = stagevar.generate(session, stagevar.resolve(schedule, "infinity"), seed=3)
    ours = ours.permute(0, 2, 3, 1).mul(255).to(torch.uint8).flip(dims=(3,))  # upstream's conversion: truncation, BGR
    assert theirs.dtype == torch.uint8 and theirs.shape == ours.shape
    # Same weights, same schedule, same code path reading the parameters by their official names.
    assert (theirs.int() - ours.int()).abs().max() <= 1
    assert omodel.autoregressive_infer_cfg == official_method  # restored: the official bound method again
    assert "autoregressive_infer_cfg" not in omodel.__dict__


def test_vanilla_through_accelerate_equals_the_plain_loop_on_the_official_object(infinity_official):
    omodel, ovae = build_official(infinity_official, patchify=False, seed=1)
    text = random_text([4])
    _, _, plain = official_call(omodel, run_plain, **_call(text, ovae, seed=7))
    with stagevar.accelerated(omodel, "vanilla"):
        _, _, vanilla = omodel.autoregressive_infer_cfg(**_call(text, ovae, seed=7))
    assert torch.equal(plain, vanilla)
