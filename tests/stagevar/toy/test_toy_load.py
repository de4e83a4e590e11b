"""Loading a trained toy folder (checksums, the Infinity loaders) and generating/scoring it under every schedule."""

import shutil

import pytest
import torch

import stagevar
from stagevar.models.infinity import InfinitySession
from stagevar.toy import ToyModel, evaluate, load, verify
from stagevar.toy.checker import CRITERIA
from stagevar.zoo import Built


@pytest.fixture(scope="module")
def toy(rehearsal_dir):
    return load(rehearsal_dir)


def test_load_gives_a_session_factory(toy, rehearsal_dir):
    assert isinstance(toy, ToyModel) and isinstance(toy, Built) and toy.family == "infinity"
    assert not toy.model.training and not any(p.requires_grad for p in toy.model.parameters())
    s = toy.new_session(batch=2, seed=3)
    assert isinstance(s, InfinitySession) and s.batch == 2 and s.scales == toy.config.scales
    img = stagevar.generate(s, stagevar.presets("infinity")["vanilla"])
    assert img.shape == (2, 3, 64, 64) and 0 <= img.min() and img.max() <= 1
    # seeds are per item: item 1 of a batch equals a one-caption session with its caption and seed
    caps = ["a red circle", "two blue squares"]
    both = stagevar.generate(toy.new_session(batch=2, seed=5, captions=caps), stagevar.presets("infinity")["vanilla"])
    one = toy.captions_session([caps[1]], [6])
    torch.testing.assert_close(stagevar.generate(one, stagevar.presets("infinity")["vanilla"])[0], both[1])
    with pytest.raises(ValueError, match="captions"):
        toy.new_session(batch=2, captions=["a red circle"])
    with pytest.raises(ValueError, match="unknown word"):
        toy.new_session(batch=1, captions=["a red elephant"])


def test_loaded_weights_are_the_saved_ones(toy, rehearsal_dir):
    from safetensors.torch import load_file

    sd = load_file(str(rehearsal_dir / "infinity.safetensors"))
    own = toy.model.state_dict()
    assert all(torch.equal(own[k].float(), v) for k, v in sd.items())
    dec = load_file(str(rehearsal_dir / "tokenizer.safetensors"))
    assert torch.equal(toy.vae.state_dict()["decoder.conv_out.conv.weight"], dec["decoder.conv_out.conv.weight"])


@pytest.mark.parametrize("schedule", sorted(stagevar.presets("infinity")))
def test_every_preset_runs_and_scores_in_unit_range(toy, schedule):
    scores = evaluate(toy, schedule, n=3, batch=2)
    assert scores["n"] == 3
    assert {"colour", "shape", "count", "overall"} <= set(scores) <= set(CRITERIA) | {"n"}
    assert all(0.0 <= scores[k] <= 1.0 for k in scores if k != "n")


def test_evaluate_validates(toy):
    with pytest.raises(ValueError, match="n, batch"):
        evaluate(toy, "vanilla", n=0)
    with pytest.raises(ValueError, match="schedule"):
        evaluate(toy, "no-such-preset", n=1)


def test_checksum_mismatch_names_the_file(rehearsal_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(rehearsal_dir, copy)
    verify(copy)
    path = copy / "text.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=str(path)):
        load(copy)
    (copy / "SHA256SUMS").unlink()
    with pytest.raises(FileNotFoundError, match="SHA256SUMS"):
        load(copy)
