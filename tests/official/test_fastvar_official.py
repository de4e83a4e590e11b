"""The FastVAR peer (``stagevar.peers.fastvar``) against FastVAR's own Infinity code, on CPU with tiny random weights.

Skipped unless ``FASTVAR_REPO`` names a checkout of csguoh/FastVAR (the folder holding ``Infinity/``). FastVAR's
released code is wired to 1:1 at 1024px (scales 32/40 pruned, 48/64 skipped, batch 2 = one image with CFG), so the
comparison runs that schedule with one image: the sampled bits of every computed scale must be equal.
"""

import os
import sys

import pytest
import torch

REPO = os.environ.get("FASTVAR_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="FASTVAR_REPO not set (path of a checkout of csguoh/FastVAR)")

sys.path.insert(0, os.path.dirname(__file__))
from infinity_tiny import build_official  # noqa: E402


@pytest.fixture(scope="module")
def fastvar_official():
    import types

    import infinity_standins

    before = set(sys.modules)
    added = infinity_standins.install()
    for name in ("cv2", "matplotlib", "matplotlib.pyplot"):  # imported by the fork, unused at inference
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    root = os.path.join(REPO, "Infinity")
    sys.path.insert(0, root)
    import infinity.models.infinity as inf_mod

    for name in ("fused_ada_layer_norm", "fused_ada_rms_norm"):  # eager originals of the compiled norms
        f = getattr(inf_mod, name, None)
        if f is not None:
            setattr(inf_mod, name, getattr(f, "_torchdynamo_orig_callable", None) or getattr(f, "__wrapped__", f))
    from infinity.models.bsq_vae.vae import vae_model

    yield inf_mod, vae_model
    infinity_standins.uninstall(added + [k for k in set(sys.modules) - before if k.split(".")[0] == "infinity"])
    sys.path.remove(root)


def test_fastvar_peer_reproduces_the_released_code(fastvar_official, monkeypatch):
    from stagevar.models.common import run_plain
    from stagevar.models.infinity import TextFeatures, get_scale_schedule, new_session
    from stagevar.peers import fastvar

    inf_mod, _ = fastvar_official
    model, vae = build_official(fastvar_official, patchify=False, seed=1, pn="1M")
    sched = [(1, h, w) for h, w in get_scale_schedule(1.0, "1M")]
    n = len(sched)
    text = TextFeatures(torch.randn(5, 128, generator=torch.Generator().manual_seed(2)), [5])

    bits = []
    sampler = inf_mod.sample_with_top_k_top_p_also_inplace_modifying_logits_

    def spy(*args, **kwargs):
        out = sampler(*args, **kwargs)
        bits.append(out.clone())
        return out

    monkeypatch.setattr(inf_mod, "sample_with_top_k_top_p_also_inplace_modifying_logits_", spy)
    with torch.no_grad():
        model.autoregressive_infer_cfg(
            vae=vae,
            scale_schedule=sched,
            label_B_or_BLT=text.as_upstream(),
            B=1,
            g_seed=7,
            cfg_list=[3.0] * n,
            tau_list=[0.5] * n,
            top_k=900,
            top_p=0.97,
            cfg_insertion_layer=[0],
            vae_type=8,
            ret_img=False,
            returns_vemb=1,
            inference_mode=True,
        )
    assert len(bits) == n - 2  # the released loop skips 48x48 and 64x64

    session = new_session(model, vae, sched, text, seeds=7, cfg_list=3.0, tau_list=0.5, record=True, ca_bf16=True)
    fastvar.generate(session, decode=False)  # our peer, driving the released model's own parameters
    assert len(session.records) == n - 2
    for si in range(n - 2):
        assert torch.equal(session.records[si]["bits"].reshape(-1), bits[si].reshape(-1)), si
    # Not vacuous: the pruning changes what scales 32 and 40 draw compared with the unpruned model.
    plain = new_session(model, vae, sched, text, seeds=7, cfg_list=3.0, tau_list=0.5, record=True, ca_bf16=True)
    run_plain(plain, decode=False)
    assert not torch.equal(plain.records[10]["bits"].reshape(-1), bits[10].reshape(-1))
