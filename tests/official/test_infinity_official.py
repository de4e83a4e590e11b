"""Our Infinity against the official code (FoundationVision/Infinity), on CPU in fp32 with tiny random weights.

Skipped unless ``INFINITY_REPO`` names an official Infinity source tree (the folder holding ``infinity/``), e.g.::

    git -C <mirror of github:FoundationVision/Infinity> archive HEAD infinity tools | tar -x -C /tmp/infinity_src
    INFINITY_REPO=/tmp/infinity_src python -m pytest tests/official/test_infinity_official.py -q

Stand-ins for flash_attn / timm / pytz / torchvision / imageio come from ``infinity_standins.py``. The official
cross-attention runs in bf16 (it casts before flash_attn); our side mimics that with ``ca_bf16=True``.
"""

import os
import sys

import pytest
import torch

REPO = os.environ.get("INFINITY_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="INFINITY_REPO not set (path of an official Infinity source tree)")

sys.path.insert(0, os.path.dirname(__file__))
from infinity_tiny import build_official, ours_from_official, random_text, tiny_scales  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.mark.parametrize("patchify", [False, True])
def test_teacher_forced_logits_equal(infinity_official, tmp_path, patchify):
    from stagevar.models.infinity import TextFeatures, teacher_forced_logits

    off, ovae = build_official(infinity_official, patchify, seed=3)
    ours, _ = ours_from_official(off, ovae, "tiny_8b" if patchify else "tiny", tmp_path)
    sched = tiny_scales(0.5 if patchify else 1.0)
    text = TextFeatures.cat([random_text([5, 3]), random_text([4, 6], seed=1)])  # 4 rows of different lengths
    L = sum(h * w for _, h, w in sched)
    x = torch.randn(4, L - 1, ours.d_vae, generator=torch.Generator().manual_seed(2)) * 0.2
    with torch.no_grad():
        ref = off(TextFeatures(text.feats.clone(), text.lens).as_upstream(), x.clone(), sched)
    got = teacher_forced_logits(ours, text, x, sched, ca_bf16=True)
    got_off = teacher_forced_logits(off, text, x, sched, ca_bf16=True)  # our math on the official object
    start = 0
    for _, h, w in sched:
        sl = slice(start, start + h * w)
        for g in (got, got_off):
            rel = ((g[:, sl] - ref[:, sl]).norm() / ref[:, sl].norm()).item()
            assert rel < 1e-4, rel
        start += h * w


def _official_bits(infinity_official, monkeypatch):
    inf_mod, _ = infinity_official
    bits = []
    orig = inf_mod.sample_with_top_k_top_p_also_inplace_modifying_logits_

    def spy(*a, **k):
        out = orig(*a, **k)
        bits.append(out.clone())
        return out

    monkeypatch.setattr(inf_mod, "sample_with_top_k_top_p_also_inplace_modifying_logits_", spy)
    return bits


@pytest.mark.parametrize("case", ["b1", "b2_int_seed", "negative", "patchify", "hidden_cfg"])
def test_generation_reproduces_upstream(infinity_official, tmp_path, monkeypatch, case):
    from stagevar.models.common import run_plain
    from stagevar.models.infinity import new_session

    patchify = case == "patchify"
    off, ovae = build_official(infinity_official, patchify, seed=4)
    ours, vae = ours_from_official(off, ovae, "tiny_8b" if patchify else "tiny", tmp_path)
    sched = tiny_scales(0.5 if patchify else 1.0)
    n = len(sched)
    B = 2 if case == "b2_int_seed" else 1
    text = random_text([5, 3][:B])
    neg = random_text([7], seed=9) if case == "negative" else None
    insertion = [-2] if case == "hidden_cfg" else [0]  # CFG on block 2's output (gen_one_img defaults to -5)
    bits = _official_bits(infinity_official, monkeypatch)
    with torch.no_grad():
        _, _, img = off.autoregressive_infer_cfg(
            vae=ovae,
            scale_schedule=sched,
            label_B_or_BLT=text.as_upstream(),
            B=B,
            negative_label_B_or_BLT=None if neg is None else neg.as_upstream(),
            g_seed=7,
            cfg_list=[3.0] * n,
            tau_list=[0.5] * n,
            top_k=900,
            top_p=0.97,
            cfg_insertion_layer=insertion,
            vae_type=8,
            ret_img=True,
            returns_vemb=1,
            inference_mode=True,
        )
    assert len(bits) == n
    for model, v in ((off, ovae), (ours, vae)):  # the session on the official objects, and our classes
        s = new_session(
            model,
            v,
            sched,
            text,
            negative_text=neg,
            seeds=7,
            cfg_list=3.0,
            tau_list=0.5,
            record=True,
            ca_bf16=True,
            cfg_insertion_layer=insertion,
        )
        out = run_plain(s).permute(0, 2, 3, 1).mul(255).to(torch.uint8).flip(dims=(3,))  # upstream: truncation, BGR
        for si in range(n):
            assert torch.equal(s.records[si]["bits"].reshape(-1), bits[si].reshape(-1)), si
        assert torch.equal(out, img)


@pytest.mark.parametrize("name", ["infinity_2b", "infinity_8b"])
def test_vae_decoder_keys_of_real_vaes(infinity_official, name):
    """Our decoder has exactly the decoder keys and shapes of the official d32 (2B) and d56-patchify (8B) VAEs."""
    from stagevar.models.infinity import BSQVAE, get_config

    _, vae_model = infinity_official
    cfg = get_config(name).vae
    with torch.device("meta"):
        off = vae_model(
            None,
            "dynamic",
            cfg.codebook_dim,
            2**cfg.codebook_dim,
            patch_size=cfg.patch_size,
            encoder_ch_mult=list(cfg.ch_mult),
            decoder_ch_mult=list(cfg.ch_mult),
        )
        ours = BSQVAE(cfg)
    want = {k: tuple(v.shape) for k, v in off.state_dict().items() if k.startswith("decoder.")}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == want


class _LinspaceOnCPU(torch.overrides.TorchFunctionMode):
    """Upstream calls ``.item()`` on ``torch.linspace``/``torch.tensor`` results: keep those on the CPU under meta."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.linspace, torch.tensor):
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def test_state_dict_keys_of_real_2b_and_8b(infinity_official):
    """Official Infinity-2B/8B built on the meta device: same keys and shapes as ours."""
    from stagevar.models.infinity import build_infinity

    inf_mod, _ = infinity_official

    class FakeVAE:
        def __init__(self, d):
            self.embed_dim = d
            self.vocab_size = 2**d
            self.quantizer = type("Q", (), {"lfq": type("L", (), {"mask": torch.ones(d)})()})()

    for name, d, kw in (
        ("infinity_2b", 32, dict(depth=32, embed_dim=2048, num_heads=16, block_chunks=8)),
        ("infinity_8b", 14, dict(depth=40, embed_dim=3584, num_heads=28, block_chunks=8)),
    ):
        with torch.device("meta"), _LinspaceOnCPU():
            off = inf_mod.Infinity(
                vae_local=FakeVAE(d),
                text_channels=2048,
                text_maxlen=512,
                shared_aln=True,
                fused_norm=True,
                pad_to_multiplier=128,
                add_lvl_embeding_only_first_block=1,
                use_bit_label=1,
                rope2d_each_sa_layer=1,
                rope2d_normalized_by_hw=2,
                pn="1M",
                apply_spatial_patchify=int(name == "infinity_8b"),
                inference_mode=True,
                train_h_div_w_list=[1.0],
                mlp_ratio=4,
                **kw,
            )
        ours = build_infinity(name, device="meta")
        want = {k: tuple(v.shape) for k, v in off.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert got == want, name
