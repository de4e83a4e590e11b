"""State-dict keys and shapes of the d30 (1024) STAR transformer and of the ch160/v4096/z32 VQ-VAE.

The expected tables below were written by reading the official code (Davinci-XLab/STAR-T2I @ 4ae4492):
``models/var_drop.py::VAR.__init__`` with the ``sample.py`` arguments (depth 30 -> C = 1920, 30 heads,
``enable_adaptive_norm=False``, ``rotary_pos_emb=True`` so no ``pos_1LC``; ``freqs_cis``/``lvl_1L``/
``attn_bias_for_masking`` are plain attributes, not buffers), ``models/basic_var.py::AttnBlock``/``Attention``/``FFN``
(``zero_k_bias`` is a registered buffer, ``ln_wo_grad``/``logit_norm`` have no affine parameters), and
``models/vqvae.py``/``basic_vae.py``/``quant.py`` for the VAE. tests/official checks them against the real classes.
"""

from __future__ import annotations

import torch

from stagevar.models.star import STAR, VQVAE, get_config

C, H, V, CV, TXT, S = 1920, 30, 4096, 32, 1024, 14


def expected_star() -> dict[str, tuple]:
    exp = {
        "word_embed.weight": (C, CV),
        "word_embed.bias": (C,),
        "class_emb.weight": (1001, C),
        "pos_start": (1, 1, C),
        "lvl_embed.weight": (S, C),
        "head_logits.weight": (V, C),
        "head_logits.bias": (V,),
        "encoder_proj.weight": (C, TXT),
        "encoder_proj.bias": (C,),
    }
    per_block = {
        "attn.mat_qkv.weight": (3 * C, C),
        "attn.q_bias": (C,),
        "attn.v_bias": (C,),
        "attn.zero_k_bias": (C,),
        "attn.scale_mul_1H11": (1, H, 1, 1),
        "attn.proj.weight": (C, C),
        "attn.proj.bias": (C,),
        "cross_attn.mat_kv.weight": (2 * C, TXT),
        "cross_attn.mat_q.weight": (C, C),
        "cross_attn.q_bias": (C,),
        "cross_attn.v_bias": (C,),
        "cross_attn.zero_k_bias": (C,),
        "cross_attn.scale_mul_1H11": (1, H, 1, 1),
        "cross_attn.proj.weight": (C, C),
        "cross_attn.proj.bias": (C,),
        "ffn.fc1.weight": (4 * C, C),
        "ffn.fc1.bias": (4 * C,),
        "ffn.fc2.weight": (C, 4 * C),
        "ffn.fc2.bias": (C,),
    }
    for i in range(30):
        exp.update({f"blocks.{i}.{k}": v for k, v in per_block.items()})
    return exp


def _gn(p, c):
    return {f"{p}.weight": (c,), f"{p}.bias": (c,)}


def _conv(p, cout, cin, k):
    return {f"{p}.weight": (cout, cin, k, k), f"{p}.bias": (cout,)}


def _res(p, cin, cout):
    d = {
        **_gn(f"{p}.norm1", cin),
        **_conv(f"{p}.conv1", cout, cin, 3),
        **_gn(f"{p}.norm2", cout),
        **_conv(f"{p}.conv2", cout, cout, 3),
    }
    if cin != cout:
        d.update(_conv(f"{p}.nin_shortcut", cout, cin, 1))
    return d


def _attn(p, c):
    return {**_gn(f"{p}.norm", c), **_conv(f"{p}.qkv", 3 * c, c, 1), **_conv(f"{p}.proj_out", c, c, 1)}


# (level, in channels of its first resblock, out channels): ch=160, ch_mult=(1,1,2,2,4), 2 res blocks
ENC_LEVELS = [(0, 160, 160), (1, 160, 160), (2, 160, 320), (3, 320, 320), (4, 320, 640)]
DEC_LEVELS = [(4, 640, 640), (3, 640, 320), (2, 320, 320), (1, 320, 160), (0, 160, 160)]  # run order


def expected_vae(scales: int = S) -> dict[str, tuple]:
    exp = {**_conv("encoder.conv_in", 160, 3, 3)}
    for lvl, cin, cout in ENC_LEVELS:
        for j in range(2):
            exp.update(_res(f"encoder.down.{lvl}.block.{j}", cin if j == 0 else cout, cout))
            if lvl == 4:
                exp.update(_attn(f"encoder.down.{lvl}.attn.{j}", cout))
        if lvl != 4:
            exp.update(_conv(f"encoder.down.{lvl}.downsample.conv", cout, cout, 3))
    for part in ("encoder", "decoder"):
        exp.update(_res(f"{part}.mid.block_1", 640, 640))
        exp.update(_attn(f"{part}.mid.attn_1", 640))
        exp.update(_res(f"{part}.mid.block_2", 640, 640))
    exp.update(_gn("encoder.norm_out", 640))
    exp.update(_conv("encoder.conv_out", 32, 640, 3))
    exp.update(_conv("decoder.conv_in", 640, 32, 3))
    for lvl, cin, cout in DEC_LEVELS:
        for j in range(3):
            exp.update(_res(f"decoder.up.{lvl}.block.{j}", cin if j == 0 else cout, cout))
            if lvl == 4:
                exp.update(_attn(f"decoder.up.{lvl}.attn.{j}", cout))
        if lvl != 0:
            exp.update(_conv(f"decoder.up.{lvl}.upsample.conv", cout, cout, 3))
    exp.update(_gn("decoder.norm_out", 160))
    exp.update(_conv("decoder.conv_out", 3, 160, 3))
    exp["quantize.ema_vocab_hit_SV"] = (scales, 4096)
    exp["quantize.embedding.weight"] = (4096, 32)
    for k in range(4):
        exp.update(_conv(f"quantize.quant_resi.qresi_ls.{k}", 32, 32, 3))
    exp.update(_conv("quant_conv", 32, 32, 3))
    exp.update(_conv("post_quant_conv", 32, 32, 3))
    return exp


def _shapes(module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _diff(got, exp):
    return (
        sorted(set(got) - set(exp)),
        sorted(set(exp) - set(got)),
        sorted(k for k in exp if k in got and got[k] != exp[k]),
    )


def test_star_d30_keys_and_shapes():
    with torch.device("meta"):
        model = STAR(get_config("star-d30-1024").star)
    got, exp = _shapes(model), expected_star()
    assert _diff(got, exp) == ([], [], [])
    n = sum(v.numel() for v in model.state_dict().values())
    assert 1.67e9 < n < 1.70e9  # "STAR-1.7B"
    assert not any(k.startswith(("word_embed_head", "feat_extract_blocks", "head_logits2")) for k in got)


def test_vqvae_keys_and_shapes():
    with torch.device("meta"):
        vae = VQVAE(get_config("star-d30-1024").vae)
    assert _diff(_shapes(vae), expected_vae()) == ([], [], [])


def test_vqvae_256_schedule_has_10_scale_statistic():
    with torch.device("meta"):
        vae = VQVAE(get_config("star-d30-256").vae)
    assert tuple(vae.quantize.ema_vocab_hit_SV.shape) == (10, 4096)
