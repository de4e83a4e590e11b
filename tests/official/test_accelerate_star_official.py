"""accelerate()/restore() on an object of the OFFICIAL STAR class (skipped unless STAR_REPO is set)."""

import os
import sys

import pytest
import torch

REPO = os.environ.get("STAR_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="set STAR_REPO to an official STAR-T2I source tree")

sys.path.insert(0, os.path.dirname(__file__))
from star_tiny import KW, random_text  # noqa: E402

import stagevar  # noqa: E402


def test_accelerated_official_star_equals_our_class(star_pair):
    ovae, ovar, vae, model = star_pair
    hidden, mask, pool = random_text(1, seed=4)
    args = dict(
        B=1,
        label_B=None,
        encoder_hidden_states=hidden,
        encoder_attention_mask=mask,
        encoder_pool_feat=pool,
        g_seed=5,
        more_smooth=False,
        w_mask=True,
        sample_version="1024",
        **KW,
    )
    stock = ovar.autoregressive_infer_cfg(**args)
    with stagevar.accelerated(ovar, "paper"):
        theirs = ovar.autoregressive_infer_cfg(**args)
    with stagevar.accelerated(model, "paper"):
        ours = model.autoregressive_infer_cfg(**args)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(theirs, stock)
    assert "autoregressive_infer_cfg" not in ovar.__dict__
    torch.testing.assert_close(ovar.autoregressive_infer_cfg(**args), stock, rtol=0, atol=0)
