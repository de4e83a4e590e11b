"""STAR's VQ-VAE attention equals the official block bit for bit (skipped unless STAR_REPO is set)."""

import os
import sys

import pytest
import torch

REPO = os.environ.get("STAR_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="set STAR_REPO to an official STAR-T2I source tree")

sys.path.insert(0, os.path.dirname(__file__))
from star_stubs import official_star  # noqa: E402

from stagevar.models.star.vqvae import AttnBlock  # noqa: E402


@pytest.mark.parametrize(("channels", "hw", "batch"), [(64, 8, 1), (128, 16, 2)])
def test_vae_attention_is_the_official_computation(channels, hw, batch):
    with official_star(REPO):
        basic_vae = sys.modules.get("models.basic_vae") or __import__("models.basic_vae", fromlist=["AttnBlock"])
        theirs = basic_vae.AttnBlock(channels, enable_movq=False).eval()
    g = torch.Generator().manual_seed(channels)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    ours = AttnBlock(channels).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(batch, channels, hw, hw, generator=g)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
