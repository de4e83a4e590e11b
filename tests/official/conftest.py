"""Fixtures shared by the official-code tests: the official Infinity and STAR-T2I code imported once per module
(``$INFINITY_REPO``, ``$STAR_REPO``), and a STAR pair (official objects, ours) with the same random weights.

Each test module skips itself when its variable is unset, so these fixtures only run with a source tree. Both import
fixtures remove everything they imported on teardown, so the two official trees (each with top-level packages such as
``models`` and ``infinity``) never see each other.
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import infinity_standins  # noqa: E402
from star_stubs import build_official, official_star  # noqa: E402
from star_tiny import PN, TINY, official_kwargs, randomise  # noqa: E402

from stagevar.models.star import STAR, VQVAE, load_star_weights, load_vqvae_weights  # noqa: E402
from stagevar.models.star.config import STARConfig, VQVAEConfig  # noqa: E402


@pytest.fixture(scope="module")
def infinity_official():
    """(``infinity.models.infinity`` module, ``vae_model`` builder) of the official Infinity tree ``$INFINITY_REPO``."""
    repo = os.environ["INFINITY_REPO"]
    before = set(sys.modules)
    added = infinity_standins.install()
    sys.path.insert(0, repo)
    import infinity.models.infinity as inf_mod

    # fused_op.py wraps pure-torch functions in torch.compile(fullgraph=True): use the eager originals (no C++
    # toolchain needed; the math is the same). Blocks pick the function up from this module at construction.
    for name in ("fused_ada_layer_norm", "fused_ada_rms_norm"):
        f = getattr(inf_mod, name)
        if f is not None:
            setattr(inf_mod, name, getattr(f, "_torchdynamo_orig_callable", None) or f.__wrapped__)
    from infinity.models.bsq_vae.vae import vae_model

    yield inf_mod, vae_model
    # leave no trace for other official test modules: stand-ins, the official packages, the path entry
    infinity_standins.uninstall(added + [k for k in set(sys.modules) - before if k.split(".")[0] == "infinity"])
    sys.path.remove(repo)


@pytest.fixture(scope="module")
def star_official():
    """Namespace of the official STAR-T2I objects of ``$STAR_REPO`` (see ``star_stubs.official_star``)."""
    with official_star(os.environ["STAR_REPO"]) as ns:
        yield ns


@pytest.fixture(scope="module")
def star_pair(star_official):
    """(official vae, official var, our vae, our model) with the same random weights."""
    torch.manual_seed(0)
    ovae, ovar = build_official(star_official, **official_kwargs(PN, **TINY))
    randomise(ovar, 1)
    randomise(ovae, 2)
    ovar.eval()
    cfg = STARConfig(depth=2, width=128, heads=2, in_dim_cross=64, vocab_size=64, cvae=8, patch_nums=PN)
    vae = VQVAE(VQVAEConfig(vocab_size=64, z_channels=8, ch=32, patch_nums=PN))
    model = STAR(cfg, vae=vae).eval()
    load_star_weights(model, ovar.state_dict())
    load_vqvae_weights(vae, ovae.state_dict())
    return ovae, ovar, vae, model
