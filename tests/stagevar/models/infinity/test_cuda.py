"""GPU smoke test (skipped without CUDA): bf16 blocks under autocast, as the official scripts run."""

import pytest
import torch

from stagevar.models.infinity import BSQVAE, TextFeatures, build_infinity, generate_images

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("name", ["tiny", "tiny_8b"])
def test_bf16_generation_on_cuda(name):
    model = build_infinity(name, device="cuda", blocks_dtype=torch.bfloat16)
    with torch.device("cuda"):
        vae = BSQVAE(model.config.vae).eval()
    text = TextFeatures(torch.randn(7, 128, device="cuda"), [3, 4])
    a = generate_images(model, vae, text, pn="0.25M", seeds=[0, 1], cfg_list=3.0, tau_list=0.5, return_records=True)
    b = generate_images(model, vae, text, pn="0.25M", seeds=[0, 1], cfg_list=3.0, tau_list=0.5, return_records=True)
    assert torch.isfinite(a["images"]).all() and a["uint8"].dtype == torch.uint8
    assert all(torch.equal(x, y) for x, y in zip(a["bits"], b["bits"]))
