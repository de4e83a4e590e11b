"""CLIP score from a local CLIP folder (a tiny random model written by the ``tiny_clip`` fixture)."""

import pytest
import torch

from stagevar.evaluation.metrics import ClipScorer


def test_clip_score_is_100_times_the_clipped_cosine(tiny_clip):
    scorer = ClipScorer(str(tiny_clip))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 40, 48, 3), dtype=torch.uint8, generator=g)
    prompts = ["a red cube", "a blue sky over a very long road"]
    scores = scorer(images, prompts)
    inputs = scorer.processor(text=prompts, images=[i.numpy() for i in images], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = scorer.model(**inputs)
    cosine = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    assert scores == pytest.approx((100 * cosine.clamp_min(0)).tolist(), abs=1e-4)
    assert all(0 <= s <= 100 for s in scores)
    assert scorer(images[:1], prompts[:1]) == pytest.approx(scores[:1], abs=1e-4)  # per image, not per batch
    with pytest.raises(ValueError, match="^prompts"):
        scorer(images, prompts[:1])
