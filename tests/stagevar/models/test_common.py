"""What both families share: the plain loop over either session, the generators, the uint8 conversion."""

import pytest
import torch

from stagevar.models import star
from stagevar.models.common import make_generators, run_plain, to_uint8
from stagevar.models.infinity import BSQVAE, TextFeatures, build_infinity, get_scale_schedule, new_session


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _infinity_session(**kw):
    torch.manual_seed(0)
    model = build_infinity("tiny")
    vae = BSQVAE(model.config.vae).eval()
    text = TextFeatures(torch.randn(3, 128, generator=torch.Generator().manual_seed(1)), [3])
    return new_session(model, vae, get_scale_schedule(1.0, "0.06M"), text, seeds=4, cfg_list=3.0, record=True, **kw)


def test_plain_loop_over_blocks_equals_the_loop_over_infinity_chunks():
    by_chunk = _infinity_session()
    for si in range(len(by_chunk.scales)):
        x = by_chunk.scale_input(si)
        for unit in by_chunk.units("chunk"):
            for block in unit:
                x = by_chunk.run_block(block, x, si)
        by_chunk.finish_scale(si, x)
    plain = _infinity_session()
    assert run_plain(plain, decode=False) is None
    assert len(plain.records) == len(plain.scales)
    for a, b in zip(plain.records, by_chunk.records):
        assert torch.equal(a["bits"], b["bits"])
    assert torch.equal(plain.decode(), by_chunk.decode())


def test_plain_loop_drives_a_star_session():
    model, vae = star.build_star("tiny")
    g = torch.Generator().manual_seed(2)
    text = (torch.randn(2, 77, 64, generator=g), torch.ones(2, 77, dtype=torch.long), torch.randn(2, 64, generator=g))
    images = run_plain(star.new_session(model, vae, text, batch=1, seeds=0, top_k=20, top_p=0.9))
    assert images.shape == (1, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= float(images.min()) and float(images.max()) <= 1


def test_to_uint8_rounds_and_moves_channels_last():
    images = torch.tensor([0.0, 0.4 / 255, 0.6 / 255, 0.999, 1.0, 1.2, -0.1]).view(1, 1, 1, 7).expand(2, 3, 1, 7)
    u8 = to_uint8(images)
    assert u8.dtype == torch.uint8 and u8.shape == (2, 1, 7, 3)
    assert u8[0, 0, :, 0].tolist() == [0, 0, 1, 255, 255, 255, 0]
    one = to_uint8(images[0])  # a single (3, H, W) image
    assert one.shape == (1, 7, 3) and torch.equal(one, u8[0])


def test_generators():
    assert make_generators(None, 2, "cpu") is None
    one = make_generators(5, 2, "cpu")
    assert torch.equal(torch.rand(3, generator=one), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    per_image = make_generators([1, 2], 2, "cpu")
    assert len(per_image) == 2 and per_image[1].initial_seed() == 2
    with pytest.raises(ValueError, match="^seeds: expected 2 per-image seeds, got 3"):
        make_generators([1, 2, 3], 2, "cpu")


def test_generate_images_of_both_families_return_the_same_dict():
    from stagevar import zoo
    from stagevar.models.infinity import generate_images as infinity_images
    from stagevar.models.star import generate_images as star_images

    torch.manual_seed(0)
    model = build_infinity("tiny")
    vae = BSQVAE(model.config.vae).eval()
    text = TextFeatures(torch.randn(3, 128, generator=torch.Generator().manual_seed(1)), [3])
    out = infinity_images(model, vae, text, pn="0.06M", seeds=4, cfg_list=3.0, return_records=True)
    plain = run_plain(_infinity_session())
    assert set(out) == {"images", "uint8", "bits", "logits"} and torch.equal(out["images"], plain)
    assert torch.equal(out["uint8"], to_uint8(plain)) and len(out["bits"]) == len(out["logits"]) == 7
    tiny = zoo.build("star-tiny")
    width = tiny.model.blocks[0].cross_attn.mat_kv.weight.shape[1]
    out = star_images(tiny.model, tiny.vae, zoo.random_star_text(1, 0, width), batch=1, seeds=2, return_records=True)
    assert set(out) == {"images", "uint8", "tokens", "logits"} and out["uint8"].shape[-1] == 3
    assert set(star_images(tiny.model, tiny.vae, zoo.random_star_text(1, 0, width), batch=1, seeds=2)) == {
        "images",
        "uint8",
    }
