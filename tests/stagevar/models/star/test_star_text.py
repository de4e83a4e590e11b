"""The CLIP text encoder wrapper: local loading, shapes, errors. Uses a tiny random CLIP written to tmp."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from star_helpers import tiny

from stagevar.models.star import generate_images, load_clip_text_encoder


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        (tmp_path / "clip").mkdir()
        load_clip_text_encoder(tmp_path / "clip")


def test_missing_transformers_is_a_clear_error(tmp_path, monkeypatch):
    for d in ("tokenizer", "text_encoder"):
        (tmp_path / d).mkdir()
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="pip install"):
        load_clip_text_encoder(tmp_path)


def _byte_alphabet():
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    tf = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("clip")
    tok_dir, enc_dir = root / "tokenizer", root / "text_encoder"
    tok_dir.mkdir()
    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tok = tf.CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(tok_dir))
    cfg = tf.CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    tf.CLIPTextModel(cfg).save_pretrained(str(enc_dir))
    return root


def test_encode_shapes_and_generation(tiny_clip_dir):
    enc = load_clip_text_encoder(tiny_clip_dir)
    hidden, mask, pool = enc.encode_for_cfg(["a red car.", "a cute dog"])
    assert hidden.shape == (4, 77, 64) and hidden.dtype == torch.float32
    assert mask.shape == (4, 77) and set(mask.unique().tolist()) <= {0, 1}
    assert mask[2].sum() == mask[3].sum() == 2  # empty prompt: start + end tokens
    assert pool.shape == (4, 64)
    torch.testing.assert_close(pool[2], pool[3])
    model, vae = tiny()
    img = generate_images(model, vae, (hidden, mask, pool), batch=2, seeds=0, cfg=4.5, top_k=20, top_p=0.9)["images"]
    assert img.shape == (2, 3, 16, 16)
