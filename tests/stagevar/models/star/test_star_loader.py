"""Checkpoint loaders: nested/flat layouts, strict reports, missing files, sampler refusal, the VAE statistic."""

from __future__ import annotations

import pytest
import torch
from star_helpers import tiny

from stagevar.models.checkpoint import CheckpointMismatch
from stagevar.models.star import STAR, VQVAE, get_config, load_star_weights, load_vqvae_weights


def _fresh():
    m, v = tiny(seed=1)
    return m, v


def test_nested_training_checkpoint(tmp_path, tiny_model):
    src, _ = tiny_model
    path = tmp_path / "STAR.pth"
    torch.save({"trainer": {"var_wo_ddp": src.state_dict(), "epoch": 3}, "iter": 10}, path)
    dst, _ = _fresh()
    load_star_weights(dst, path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_flat_state_dict_and_module_prefix(tmp_path, tiny_model):
    src, _ = tiny_model
    dst, _ = _fresh()
    load_star_weights(dst, {f"module.{k}": v for k, v in src.state_dict().items()})
    assert torch.equal(dst.head_logits.weight, src.head_logits.weight)
    path = tmp_path / "flat.pth"
    torch.save(src.state_dict(), path)
    dst2, _ = _fresh()
    load_star_weights(dst2, str(path))
    assert torch.equal(dst2.word_embed.weight, src.word_embed.weight)


def test_strict_report_names_missing_unexpected_and_shapes(tiny_model):
    src, _ = tiny_model
    sd = dict(src.state_dict())
    del sd["blocks.0.attn.q_bias"]
    sd["blocks.0.attn.extra"] = torch.zeros(1)
    sd["head_logits.bias"] = torch.zeros(7)
    dst, _ = _fresh()
    with pytest.raises(CheckpointMismatch) as e:
        load_star_weights(dst, sd)
    msg = str(e.value)
    assert "missing 1 keys: blocks.0.attn.q_bias" in msg
    assert "unexpected 1 keys: blocks.0.attn.extra" in msg
    assert "head_logits.bias ckpt (7,) vs model (64,)" in msg
    assert e.value.report.missing == ["blocks.0.attn.q_bias"]


def test_missing_file(tmp_path, tiny_model):
    m, v = tiny_model
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_star_weights(m, tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="vae.pth"):
        load_vqvae_weights(v, str(tmp_path / "vae.pth"))


def test_sampler_checkpoint_refused(tiny_model):
    src, _ = tiny_model
    sd = dict(src.state_dict())
    sd["feat_extract_blocks.0.attn.q_bias"] = torch.zeros(128)
    sd["head_logits2.weight"] = torch.zeros(64, 128)
    dst, _ = _fresh()
    with pytest.raises(ValueError, match="sampler head is not supported.*non-sampler STAR checkpoint"):
        load_star_weights(dst, {"trainer": {"var_wo_ddp": sd}})


def test_pickled_objects_need_allow_pickle(tmp_path, tiny_model):
    src, _ = tiny_model

    path = tmp_path / "with_args.pth"
    torch.save({"trainer": {"var_wo_ddp": src.state_dict()}, "args": _Args()}, path)
    dst, _ = _fresh()
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_star_weights(dst, path)
    load_star_weights(dst, path, allow_pickle=True)
    assert torch.equal(dst.pos_start, src.pos_start)


class _Args:
    lr = 1e-4


def test_vqvae_load_replaces_scale_statistic_of_other_schedule(tmp_path):
    cfg = get_config("tiny").vae
    v10 = VQVAE(type(cfg)(**{**cfg.__dict__, "patch_nums": tuple(range(1, 11))}))
    v4 = VQVAE(cfg)
    sd = v10.state_dict()
    assert sd["quantize.ema_vocab_hit_SV"].shape[0] == 10
    path = tmp_path / "vae.pth"
    torch.save(sd, path)
    load_vqvae_weights(v4, path)
    assert v4.quantize.ema_vocab_hit_SV.shape[0] == 4
    assert torch.equal(v4.decoder.conv_out.weight, v10.decoder.conv_out.weight)
    v4.load_state_dict(sd)  # the module's own load_state_dict does the same, as upstream
    sd.pop("encoder.conv_in.weight")
    with pytest.raises(CheckpointMismatch, match="encoder.conv_in.weight"):
        load_vqvae_weights(v4, sd)


def test_meta_build_then_assign_load(tiny_model):
    src, _ = tiny_model
    with torch.device("meta"):
        m = STAR(src.config)
    m.load_state_dict(src.state_dict(), assign=True)
    assert torch.equal(m.word_embed.weight, src.word_embed.weight)


def test_load_star_from_files(tmp_path, tiny_model):
    from star_helpers import make_text

    from stagevar.models.star import generate_images, load_star

    src, svae = tiny_model
    torch.save({"trainer": {"var_wo_ddp": src.state_dict()}}, tmp_path / "STAR.pth")
    torch.save(svae.state_dict(), tmp_path / "VAE.pth")
    model, vae = load_star(tmp_path / "STAR.pth", tmp_path / "VAE.pth", "tiny", depth=2, width=128, heads=4)
    assert not any(t.is_meta for t in model.state_dict().values())
    assert model.vae_proxy[0] is vae
    text = make_text(1)
    kw = dict(batch=1, seeds=0, cfg=4.5, top_k=20, top_p=0.9)
    assert torch.equal(
        generate_images(model, vae, text, **kw)["images"], generate_images(src, svae, text, **kw)["images"]
    )


def test_legacy_serialization_format_loads(tmp_path, tiny_model):
    src, _ = tiny_model
    path = tmp_path / "legacy.pth"
    torch.save(src.state_dict(), path, _use_new_zipfile_serialization=False)
    dst, _ = _fresh()
    load_star_weights(dst, path)
    assert torch.equal(dst.head_logits.weight, src.head_logits.weight)
