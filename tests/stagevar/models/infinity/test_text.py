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
