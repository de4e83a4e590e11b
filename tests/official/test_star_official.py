"""Our STAR against the official STAR-T2I code. Skipped unless ``STAR_REPO`` names an official source tree
(a checkout of Davinci-XLab/STAR-T2I); runs on CPU in fp32.

Checks: the d30 state-dict keys/shapes equal the official ones; the same random weights give the same logits in
the teacher-forced pass and, scale by scale, in the KV-cached generation (same tokens, same images); our session
drives an official ``VAR`` object; our loaders accept checkpoints saved from the official model.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

REPO = os.environ.get("STAR_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="set STAR_REPO to an official STAR-T2I source tree")

sys.path.insert(0, os.path.dirname(__file__))
from star_stubs import build_official  # noqa: E402
from star_tiny import KW, PN, TINY, official_kwargs, random_text  # noqa: E402

from stagevar.models.common import run_plain  # noqa: E402
from stagevar.models.star import (  # noqa: E402
    STAR,
    VQVAE,
    generate_images,
    load_star_weights,
    load_vqvae_weights,
    new_session,
    teacher_forced_logits,
)
from stagevar.models.star.config import PATCH_NUMS_1024, STARConfig, VQVAEConfig  # noqa: E402
from stagevar.models.star.official import official_call  # noqa: E402
from stagevar.models.star.quant import idx_to_var_input  # noqa: E402


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_d30_keys_and_shapes_equal_official(star_official):
    orig = star_official.var_drop.VAR.init_weights
    star_official.var_drop.VAR.init_weights = lambda self, *a, **k: None  # weights stay torch.empty: no memory touched
    try:
        ovae, ovar = build_official(star_official, **official_kwargs(PATCH_NUMS_1024, depth=30))
    finally:
        star_official.var_drop.VAR.init_weights = orig
    with torch.device("meta"):
        model = STAR(STARConfig())
        vae = VQVAE(VQVAEConfig())
    for ours, theirs in ((model, ovar), (vae, ovae)):
        a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert a == b
    assert [n for n, _ in model.named_children()] == [n for n, _ in ovar.named_children()]


def test_teacher_forced_logits_equal(star_pair):
    ovae, ovar, vae, model = star_pair
    hidden, mask, pool = random_text(2, seed=1)
    L = sum(p * p for p in PN)
    x_next = torch.randn(4, L - 1, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, _, _ = ovar(x_next, encoder_hidden_states=hidden, encoder_attention_mask=mask, encoder_pool_feat=pool)
    ours = teacher_forced_logits(model, x_next, hidden, mask, pool)
    assert _rel(ours, ref) <= 1e-5
    duck = teacher_forced_logits(ovar, x_next, hidden, mask, pool)  # our math on the official object
    assert _rel(duck, ref) <= 1e-5


@pytest.mark.parametrize("batch", [1, 2])
def test_kv_cached_generation_equals_official(star_pair, batch):
    ovae, ovar, vae, model = star_pair
    hidden, mask, pool = random_text(batch, seed=4 + batch)
    seen = []
    orig = ovar.get_logits

    def spy(h):
        out = orig(h)
        seen.append(out.clone())
        return out

    ovar.get_logits = spy
    try:
        ref_img = ovar.autoregressive_infer_cfg(
            B=batch,
            label_B=None,
            encoder_hidden_states=hidden,
            encoder_attention_mask=mask,
            encoder_pool_feat=pool,
            g_seed=42,
            more_smooth=False,
            w_mask=True,
            sample_version="1024",
            **KW,
        )
    finally:
        del ovar.get_logits
    s = new_session(model, vae, (hidden, mask, pool), batch=batch, seeds=42, record=True, **KW)
    run_plain(s, decode=False)
    assert len(seen) == len(PN)
    for si in range(len(PN)):
        assert _rel(s.record_logits[si], seen[si]) <= 1e-5, si
    torch.testing.assert_close(s.decode(), ref_img, rtol=1e-4, atol=1e-4)
    # our session driving the official object (duck typing) gives the same
    s2 = new_session(ovar, ovae, (hidden, mask, pool), batch=batch, seeds=42, record=True, **KW)
    run_plain(s2, decode=False)
    for si in range(len(PN)):
        assert torch.equal(s2.record_tokens[si], s.record_tokens[si])
        assert _rel(s2.record_logits[si], seen[si]) <= 1e-5
    torch.testing.assert_close(s2.decode(), ref_img, rtol=1e-4, atol=1e-4)
    # the teacher-forced oracle on the official model with the sampled tokens
    x_next = idx_to_var_input(vae.quantize, s.record_tokens, PN).repeat(2, 1, 1)
    with torch.no_grad():
        tf, _, _ = ovar(x_next, encoder_hidden_states=hidden, encoder_attention_mask=mask, encoder_pool_feat=pool)
    begin = 0
    for si, pn in enumerate(PN):
        assert _rel(s.record_logits[si], tf[:, begin : begin + pn * pn]) <= 1e-5
        begin += pn * pn


def test_autoregressive_infer_cfg_same_images(star_pair):
    ovae, ovar, vae, model = star_pair
    hidden, mask, pool = random_text(1, seed=9)
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
    ref = ovar.autoregressive_infer_cfg(**args)
    torch.testing.assert_close(model.autoregressive_infer_cfg(**args), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        generate_images(ovar, None, (hidden, mask, pool), batch=1, seeds=5, **KW)["images"], ref, rtol=1e-4, atol=1e-4
    )
    # the entry point accelerate() installs, with the plain runner, on the official object
    torch.testing.assert_close(official_call(ovar, run_plain, **args), ref, rtol=1e-4, atol=1e-4)


def test_vae_decode_equal(star_pair):
    ovae, _, vae, _ = star_pair
    f_hat = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            vae.fhat_to_img(f_hat.clone()), ovae.fhat_to_img(f_hat.clone()), rtol=1e-5, atol=1e-5
        )


def test_loaders_accept_official_checkpoints(star_pair, star_official, tmp_path):
    ovae, ovar, _, _ = star_pair
    ck = tmp_path / "STAR.pth"
    torch.save({"trainer": {"var_wo_ddp": ovar.state_dict()}}, ck)
    vk = tmp_path / "VAE.pth"
    torch.save(ovae.state_dict(), vk)
    model = STAR(STARConfig(depth=2, width=128, heads=2, in_dim_cross=64, vocab_size=64, cvae=8, patch_nums=PN))
    vae = VQVAE(VQVAEConfig(vocab_size=64, z_channels=8, ch=32, patch_nums=PN))
    load_star_weights(model, ck)
    load_vqvae_weights(vae, vk)
    for k, v in ovar.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    # the 10-scale VAE statistic of a 256 checkpoint loads into our 5-scale model, as upstream
    sd = dict(ovae.state_dict())
    sd["quantize.ema_vocab_hit_SV"] = torch.zeros(10, 64)
    load_vqvae_weights(vae, sd)
    # and a checkpoint saved from our model loads into the official one strictly
    ovar.load_state_dict(model.state_dict(), strict=True)
    # the sampler checkpoint (official model with enable_adaptive_norm=True) is refused
    torch.manual_seed(0)
    _, sampler = build_official(
        star_official, **official_kwargs(PN, **dict(TINY, depth=3), enable_adaptive_norm=True, sample_from_idx=2)
    )
    m3 = STAR(STARConfig(depth=3, width=192, heads=3, in_dim_cross=64, vocab_size=64, cvae=8, patch_nums=PN))
    with pytest.raises(ValueError, match="sampler head is not supported"):
        load_star_weights(m3, {"trainer": {"var_wo_ddp": sampler.state_dict()}})
