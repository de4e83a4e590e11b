"""Text features: packing, CFG rows, the optional T5 loader's errors."""

import importlib.util

import pytest
import torch

from stagevar.models.infinity import TextFeatures, load_t5
from stagevar.models.infinity.text import cfg_rows, null_text


def test_from_padded_and_upstream_tuple():
    feats = torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    t = TextFeatures.from_padded(feats, mask)
    assert t.lens == [3, 5] and t.feats.shape == (8, 4)
    torch.testing.assert_close(t.feats[3:], feats[1, :5])
    kv, lens, cu, mx = t.as_upstream()
    assert lens == [3, 5] and cu.tolist() == [0, 3, 8] and cu.dtype == torch.int32 and mx == 5
    assert TextFeatures.from_any((kv, lens, cu, mx)).lens == [3, 5]
    assert t.select([1]).lens == [5]
    with pytest.raises(TypeError):
        TextFeatures.from_any(torch.zeros(3))


def test_cfg_rows(tiny):
    model, _ = tiny
    t = TextFeatures(torch.randn(7, 128), [3, 4])
    rows = cfg_rows(model, t, None, True)
    assert rows.lens == [3, 4, 3, 4]
    torch.testing.assert_close(rows.feats[7:], null_text(model.cfg_uncond, [3, 4]).feats)
    neg = TextFeatures(torch.randn(2, 128), [2])
    assert cfg_rows(model, t, neg, True).lens == [3, 4, 2, 2]  # one negative prompt broadcast to the batch
    assert cfg_rows(model, t, None, False) is t


def test_t5_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="flan-t5-xl"):
        load_t5(str(tmp_path / "flan-t5-xl"))
    if importlib.util.find_spec("transformers") is None:
        with pytest.raises(ImportError, match="transformers"):
            load_t5(str(tmp_path))


def _tiny_t5_dir(path):
    """A flan-T5-like encoder 128 wide with a 20-piece SentencePiece vocabulary, saved the HF way in ``path``."""
    import sentencepiece as spm
    import transformers as tf

    corpus = path / "corpus.txt"
    corpus.write_text("\n".join(["a photo of a cat", "a red dog on the grass", "an astronaut riding a horse"] * 50))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(path / "spiece"),
        vocab_size=20,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    out = path / "t5"
    tf.T5Tokenizer(vocab_file=str(path / "spiece.model"), extra_ids=0, legacy=True).save_pretrained(str(out))
    torch.manual_seed(0)
    cfg = tf.T5Config(
        d_model=128, d_ff=64, d_kv=16, num_heads=2, num_layers=1, vocab_size=64, feed_forward_proj="gated-gelu"
    )
    tf.T5EncoderModel(cfg).save_pretrained(str(out))
    return str(out)


def test_t5_local_directory_end_to_end(tmp_path, tiny):
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("sentencepiece") is None:
        pytest.skip("transformers/sentencepiece not installed")
    from stagevar.models.infinity import encode_prompts, generate_images

    tok, enc = load_t5(_tiny_t5_dir(tmp_path), device="cpu", dtype=torch.float32)
    text = encode_prompts(tok, enc, ["a cat", "a red dog on the grass"], max_length=16)
    assert text.batch == 2 and text.lens[0] < text.lens[1] <= 16 and text.feats.shape == (sum(text.lens), 128)
    assert text.feats.dtype == torch.float32
    model, vae = tiny
    out = generate_images(model, vae, text, pn="0.06M", seeds=[0, 1])
    assert out["uint8"].shape == (2, 64, 64, 3)
