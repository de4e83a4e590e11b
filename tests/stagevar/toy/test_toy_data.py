"""The procedural captioned dataset and the analytic checker."""

import numpy as np
import pytest
import torch

from stagevar.toy import checker, data
from stagevar.toy.text import tokenize, vocabulary


def test_samples_are_a_pure_function_of_seed_and_index():
    assert data.sample(3, 17) == data.sample(3, 17)
    assert data.sample(3, 17) != data.sample(3, 18)
    assert data.sample(3, 17) != data.sample(4, 17)
    a, caps_a, _ = data.batch(5, [0, 9, 2])
    b, caps_b, _ = data.batch(5, [0, 9, 2])
    assert torch.equal(a, b) and caps_a == caps_b
    assert a.shape == (3, 3, 64, 64) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError, match="seed"):
        data.sample(-1, 0)


def test_captions_follow_the_grammar_and_tokenize():
    specs = data.specs(0, range(200))
    assert {s.kind for s in specs} == set(data.KINDS)
    captions = [data.caption(s) for s in specs]
    ids, mask = tokenize(captions, 16)
    assert ids.shape == (200, 16) and mask.sum(1).min() >= 2 and mask.sum(1).max() <= 10
    assert set(w for c in captions for w in c.split()) <= set(vocabulary())
    assert data.caption(data.Spec("count", (data.Obj("blue", "square", 2),))) == "two blue squares"
    rel = data.Spec("relation", (data.Obj("green", "triangle"), data.Obj("yellow", "circle")), "above")
    assert data.caption(rel) == "a green triangle above a yellow circle"
    pos = data.Spec("position", (data.Obj("red", "circle"),), "left")
    assert data.caption(pos) == "a red circle on the left"
    with pytest.raises(ValueError, match="unknown word 'dog'"):
        tokenize(["a red dog"], 16)
    with pytest.raises(ValueError, match="captions"):
        tokenize(["a red circle"], 2)


def test_checker_scores_every_dataset_image_fully():
    images, captions, specs = data.batch(1, range(300))
    scores = [checker.score(img, s) for img, s in zip(images, specs)]
    means = checker.mean_scores(scores)
    assert set(means) == set(checker.CRITERIA)
    assert all(v == 1.0 for v in means.values()), means
    # the uint8 HWC form scores the same
    u8 = images[:20].permute(0, 2, 3, 1).mul(255).round().to(torch.uint8).numpy()
    assert all(checker.score(x, s)["overall"] == 1.0 for x, s in zip(u8, specs[:20]))


def test_checker_detects_shape_colour_and_position():
    layout = [
        data.Placed("red", "circle", 16.0, 20.0, 8.0),
        data.Placed("blue", "square", 48.0, 20.0, 8.0),
        data.Placed("yellow", "triangle", 32.0, 48.0, 8.0),
    ]
    found = checker.detect(data.render([layout])[0])
    got = sorted((d.colour, d.shape, round(d.cx), round(d.cy)) for d in found)
    # an equilateral triangle's centroid is its circumcentre: every centre comes back
    assert got == [("blue", "square", 48, 20), ("red", "circle", 16, 20), ("yellow", "triangle", 32, 48)]


def test_checker_rejects_images_that_do_not_match_the_caption():
    img = data.render([[data.Placed("red", "circle", 14.0, 32.0, 8.0)]])[0]
    red_left = data.Spec("position", (data.Obj("red", "circle"),), "left")
    assert checker.score(img, red_left)["overall"] == 1.0
    s = checker.score(img, data.Spec("position", (data.Obj("red", "circle"),), "right"))
    assert s["position"] == 0.0 and s["colour"] == 1.0 and s["overall"] == 0.0
    s = checker.score(img, data.Spec("single", (data.Obj("blue", "circle"),)))
    assert s["colour"] == 0.0 and s["shape"] == 1.0 and s["position"] is None and s["overall"] == 0.0
    s = checker.score(img, data.Spec("count", (data.Obj("red", "circle", 2),)))
    assert s["count"] == 0.0 and s["overall"] == 0.0
    s = checker.score(img, data.Spec("two", (data.Obj("red", "circle"), data.Obj("green", "square"))))
    assert s["two_object"] == 0.0 and s["overall"] == 0.0


@pytest.mark.parametrize("kind", ["blank", "white", "noise", "blocky"])
def test_checker_scores_low_on_noise_and_blank(kind):
    g = torch.Generator().manual_seed(0)
    n = 40
    if kind == "blank":
        imgs = torch.zeros(n, 3, 64, 64)
    elif kind == "white":
        imgs = torch.ones(n, 3, 64, 64)
    elif kind == "noise":
        imgs = torch.rand(n, 3, 64, 64, generator=g)
    else:  # 4x4-pixel blocks of random colours
        imgs = torch.rand(n, 3, 16, 16, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)
    specs = data.specs(2, range(n))
    means = checker.mean_scores([checker.score(x, s) for x, s in zip(imgs, specs)])
    # blocky noise can form a square of one palette colour by chance (1 of these 40 images does)
    assert means["overall"] <= 0.05
    assert max(means.values()) <= 0.25, means


def test_checker_validates_its_input():
    spec = data.specs(0, [0])[0]
    with pytest.raises(ValueError, match="image"):
        checker.score(torch.zeros(64, 64), spec)
    with pytest.raises(ValueError, match="image"):
        checker.score(np.zeros((3, 64, 64), np.uint8), spec)
