"""Checkpoint loaders: .pth, sharded (.bin and .safetensors), strict reports, VAE keys, missing files."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from stagevar.models.checkpoint import CheckpointMismatch
from stagevar.models.infinity import (
    BSQVAE,
    build_infinity,
    load_infinity,
    load_infinity_weights,
    load_vae_weights,
    read_state_dict,
    save_sharded,
)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pth_round_trip(tmp_path, tiny):
    model, _ = tiny
    path = str(tmp_path / "infinity_tiny.pth")
    torch.save(model.state_dict(), path)
    fresh = build_infinity("tiny")
    rep = load_infinity_weights(fresh, path)
    assert rep.ok and str(rep) == "all keys matched"
    assert _same(model, fresh)


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_sharded_round_trip(tmp_path, tiny, fmt):
    if fmt == "safetensors" and importlib.util.find_spec("safetensors") is None:
        pytest.skip("safetensors not installed")
    model, _ = tiny
    index = save_sharded(model.state_dict(), str(tmp_path), max_shard_bytes=20_000, safetensors=fmt == "safetensors")
    assert len({f for f in os.listdir(tmp_path) if f.endswith(fmt)}) > 2
    for src in (index, str(tmp_path)):
        fresh = build_infinity("tiny")
        load_infinity_weights(fresh, src)
        assert _same(model, fresh)


def test_strict_report(tiny):
    model, _ = tiny
    sd = dict(model.state_dict())
    sd.pop("head.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["word_embed.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointMismatch) as e:
        load_infinity_weights(build_infinity("tiny"), sd)
    msg = str(e.value)
    assert "missing 1 keys: head.bias" in msg and "unexpected 1 keys: extra.weight" in msg
    assert "word_embed.weight ckpt (3, 3) vs model (64, 8)" in msg
    rep = load_infinity_weights(build_infinity("tiny"), sd, strict=False)
    assert rep.missing == ["head.bias"] and not rep.ok


def test_tolerated_keys(tiny):
    model, _ = tiny
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("zero_k_bias")}
    sd["attn_bias_for_masking"] = torch.zeros(1, 1, 4, 4)
    fresh = build_infinity("tiny")
    rep = load_infinity_weights(fresh, sd)
    assert rep.ok and "attn_bias_for_masking" in rep.ignored and len(rep.ignored) == 1 + 4 * 2 + 1
    assert _same(model, fresh)


def test_cfg_uncond_resized_as_upstream(tiny):
    model, _ = tiny
    sd = dict(model.state_dict())
    sd["cfg_uncond"] = sd["cfg_uncond"][:10].clone()
    fresh = build_infinity("tiny")
    load_infinity_weights(fresh, sd)
    torch.testing.assert_close(fresh.cfg_uncond[:10], sd["cfg_uncond"])


def test_missing_files(tmp_path):
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_state_dict(missing)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_infinity("tiny", model_path=missing)
    with pytest.raises(FileNotFoundError, match="vae.pth"):
        load_infinity("tiny", vae_path=str(tmp_path / "vae.pth"))


def test_vae_checkpoint_official_layout(tmp_path, tiny):
    _, vae = tiny
    sd = {k: torch.randn_like(v) for k, v in vae.state_dict().items()}
    # the official file: {'vae': {...}} with encoder and quantizer keys too; some keys without the Conv wrapper
    ckpt = dict(sd)
    w = ckpt.pop("decoder.conv_in.conv.weight")
    ckpt["decoder.conv_in.weight"] = w
    ckpt["encoder.conv_in.conv.weight"] = torch.zeros(1)
    ckpt["quantizer.lfq.mask"] = torch.ones(8)
    path = str(tmp_path / "vae.pth")
    torch.save({"vae": ckpt}, path)
    fresh = BSQVAE(vae.cfg)
    rep = load_vae_weights(fresh, path)
    assert rep.ok and len(rep.ignored) == 2
    assert all(torch.equal(fresh.state_dict()[k], sd[k]) for k in sd)
    bad = dict(sd)
    bad.pop("decoder.norm_out.norm.bias")
    with pytest.raises(CheckpointMismatch, match="decoder.norm_out.norm.bias"):
        load_vae_weights(BSQVAE(vae.cfg), {"vae": bad})


def test_load_infinity_builds_and_loads(tmp_path, tiny):
    model, vae = tiny
    mp, vp = str(tmp_path / "m.pth"), str(tmp_path / "v.pth")
    torch.save(model.state_dict(), mp)
    torch.save({"vae": vae.state_dict()}, vp)
    m2, v2 = load_infinity("tiny", model_path=mp, vae_path=vp, device="cpu", bf16_blocks=True)
    assert m2.block_chunks[0].module[0].sa.mat_qkv.weight.dtype == torch.bfloat16
    assert m2.head.weight.dtype == torch.float32
    assert _same(vae, v2)
    # built on the meta device and materialised from the files: every tensor real, equal to the checkpoint
    m3, v3 = load_infinity("tiny", model_path=Path(mp), vae_path=Path(vp))
    assert not any(t.is_meta for t in [*m3.state_dict().values(), *v3.state_dict().values()])
    assert _same(model, m3) and _same(vae, v3) and not any(p.requires_grad for p in m3.parameters())


def test_vae_decoder_shapes():
    from stagevar.models.infinity import get_config

    for name, up in (("infinity_2b", 16), ("infinity_8b", 8)):
        with torch.device("meta"):
            v = BSQVAE(get_config(name).vae)
        z = torch.empty(1, v.embed_dim, 4, 4, device="meta")
        assert v.decode(z).shape == (1, 3, 4 * up, 4 * up)
        assert "decoder.up.4.upsample.conv.conv.weight" in v.state_dict() or name == "infinity_8b"
