"""The toy model's training: forward equal to the inference oracle, tokenizer codes equal to a session's,
the CI rehearsal, determinism and resuming, sizes."""

import json

import pytest
import torch

from stagevar.models.infinity import bitwise, teacher_forced_logits
from stagevar.toy import TOY64, TOY64_REHEARSAL, TRAIN_FULL, TRAIN_REHEARSAL, data
from stagevar.toy.model import build, estimate, null_rows, parameter_counts, train_logits
from stagevar.toy.tokenizer import quantize
from stagevar.toy.train import WEIGHT_FILES, lr_at, train


def _read(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_training_forward_equals_teacher_forced_logits_and_has_gradients():
    mods = build(TOY64_REHEARSAL)
    scales = TOY64_REHEARSAL.scales
    images, captions, _ = data.batch(0, range(3))
    _, _, x = quantize(mods.tokenizer.encoder(images * 2 - 1), scales)
    text = mods.text.encode(captions)
    text = null_rows(mods.infinity, text, torch.tensor([False, True, False]))
    got = train_logits(mods.infinity, text, x, scales)
    ref = teacher_forced_logits(mods.infinity, text, x, scales)
    assert got.shape == (3, sum(h * w for h, w in scales), 2 * TOY64_REHEARSAL.vae.codebook_dim)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    got.square().mean().backward()
    for part in (mods.infinity.block_chunks[7], mods.infinity.word_embed, mods.text.embed):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert mods.infinity.cfg_uncond.grad.abs().sum() > 0  # the null row trains the null text


def test_quantize_matches_what_a_session_accumulates():
    """Replaying the labels with the session's own steps (bits -> codes -> accumulate; next_input) gives the
    tokenizer's codes and transformer inputs."""
    scales = TOY64_REHEARSAL.scales
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 8, 16, 16, generator=g) * 0.5
    summed, bits, x = quantize(z, scales)
    acc, inputs = None, []
    for si, (h, w) in enumerate(scales):
        if si:
            inputs.append(bitwise.next_input(acc, (h, w), False))
        codes = bitwise.bits_to_codes(bits[si], h, w, 8, False)
        acc = bitwise.accumulate(acc, codes, scales[-1], si == len(scales) - 1)
    assert torch.equal(acc, summed) and torch.equal(torch.cat(inputs, 1), x)
    # each scale reduces the residual: the codes approximate the latent
    assert (z - summed.squeeze(2)).norm() < 0.6 * z.norm()
    with pytest.raises(ValueError, match="scales"):
        quantize(z, scales[:-1])


def test_rehearsal_writes_the_result(rehearsal_dir):
    for name in (*WEIGHT_FILES, "config.json", "SHA256SUMS", "train_log.jsonl"):
        assert (rehearsal_dir / name).is_file(), name
    assert not (rehearsal_dir / "checkpoint.pt").exists()
    log = [json.loads(line) for line in (rehearsal_dir / "train_log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log] == [("A", 1), ("A", 2), ("A", 3), ("B", 1), ("B", 2), ("B", 3)]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert 0 <= log[-1]["bit_acc"] <= 1
    sd = _read(rehearsal_dir / "infinity.safetensors")
    assert "block_chunks.7.module.0.sa.mat_qkv.weight" in sd and "cfg_uncond" in sd
    tok = _read(rehearsal_dir / "tokenizer.safetensors")
    assert any(k.startswith("encoder.") for k in tok) and "decoder.conv_out.conv.weight" in tok
    with pytest.raises(ValueError, match="finished run"):
        train(rehearsal_dir, TOY64_REHEARSAL, TRAIN_REHEARSAL, echo=lambda s: None)


def test_resumed_training_equals_an_uninterrupted_run(rehearsal_dir, tmp_path):
    out = tmp_path / "resumed"
    quiet = {"echo": lambda s: None}
    assert train(out, TOY64_REHEARSAL, TRAIN_REHEARSAL, max_seconds=0, **quiet) == "stopped"  # before any step
    assert train(out, TOY64_REHEARSAL, TRAIN_REHEARSAL, stop_after=1, **quiet) == "stopped"  # mid stage A
    assert (out / "checkpoint.pt").is_file() and not (out / "infinity.safetensors").exists()
    with pytest.raises(ValueError, match="another configuration"):
        train(out, TOY64_REHEARSAL, _other(TRAIN_REHEARSAL), **quiet)
    assert train(out, TOY64_REHEARSAL, TRAIN_REHEARSAL, stop_after=3, **quiet) == "stopped"  # across the stages
    assert train(out, TOY64_REHEARSAL, TRAIN_REHEARSAL, **quiet) == "done"
    for name in WEIGHT_FILES:
        a, b = _read(out / name), _read(rehearsal_dir / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name

    def losses(d):
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (d / "train_log.jsonl").open()]

    assert losses(out) == losses(rehearsal_dir)


def _other(cfg):
    from dataclasses import replace

    return replace(cfg, seed=cfg.seed + 1)


def test_stop_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match="stop_after"):
        train(tmp_path, TOY64_REHEARSAL, TRAIN_REHEARSAL, stop_after=-1)
    with pytest.raises(ValueError, match="max_seconds"):
        train(tmp_path, TOY64_REHEARSAL, TRAIN_REHEARSAL, max_seconds=float("nan"))


def test_learning_rate_schedule():
    assert lr_at(0, 100, 1.0, 0.05) == pytest.approx(0.2)
    assert lr_at(4, 100, 1.0, 0.05) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, 0.05) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, 100, 1.0, 0.05) >= lr_at(s + 1, 100, 1.0, 0.05) for s in range(4, 99))


def test_full_recipe_fits_its_budgets():
    """<= 20 MB of fp32 weights; <= 6 minutes on an H200 at the assumed sustained throughput (an estimate)."""
    assert sum(parameter_counts(TOY64).values()) * 4 <= 20e6
    est = estimate(TOY64, TRAIN_FULL)
    assert est["tokens"] == 521
    assert est["seconds"] <= 300  # leaves a minute of the 6 for data, checkpoints and the final evaluation
