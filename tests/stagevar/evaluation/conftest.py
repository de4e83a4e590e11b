"""The evaluation tests run tiny models: one intra-op thread (threads spinning on a shared small CPU slow them)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A local CLIP folder (transformers format) with random weights and a letter-level tokenizer."""
    import json

    transformers = pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    images = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    transformers.CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = transformers.CLIPConfig(
        text_config=dict(small, vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1),
        vision_config=dict(small, image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(out)
    return out
