"""The GPU's dtype path, exercised on CPU: bf16 blocks under bf16 autocast (Infinity, as upstream on CUDA) and
fp16/bf16 autocast (STAR), through every schedule and both CPU backends of the ops."""

import pytest
import torch

import stagevar
from stagevar import presets, zoo
from stagevar.models.infinity import build_infinity, get_config, get_scale_schedule
from stagevar.models.infinity import new_session as infinity_session
from stagevar.models.infinity.vae import BSQVAE
from stagevar.models.star import new_session as star_session
from stagevar_kernels import available_backends


@pytest.fixture(scope="module")
def infinity_bf16():
    cfg = get_config("tiny")
    torch.manual_seed(0)
    return build_infinity(cfg, blocks_dtype=torch.bfloat16), BSQVAE(cfg.vae).eval()


@pytest.mark.parametrize("backend", available_backends("cpu"))
@pytest.mark.parametrize(
    "schedule",
    [
        presets("infinity")["paper"],
        presets("infinity")["cfg-drop-only"],
        presets("infinity")["paper"].with_(projection="prune", unit="block", guidance="cfg"),
    ],
    ids=["paper", "cfg-drop-only", "prune-cfg"],
)
def test_infinity_bf16_blocks_under_autocast(infinity_bf16, schedule, backend):
    model, vae = infinity_bf16
    assert model.block_chunks[0].module[0].sa.mat_qkv.weight.dtype == torch.bfloat16
    text = zoo.random_infinity_text(128, 2, 0)
    session = infinity_session(
        model,
        vae,
        get_scale_schedule(1.0, "0.06M"),
        text,
        cfg_list=3.0,
        tau_list=0.5,
        seeds=[0, 1],
        amp_dtype=torch.bfloat16,
    )
    images = stagevar.generate(session, schedule, backend=backend)
    assert images.dtype == torch.float32 and images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()


@pytest.mark.parametrize("amp", [torch.float16, torch.bfloat16])
def test_star_under_autocast(amp):
    built = zoo.build("star-tiny")
    text = zoo.random_star_text(2, 0, built.model.blocks[0].cross_attn.mat_kv.weight.shape[1])
    for name in ("vanilla", "paper"):
        session = star_session(built.model, built.vae, text, batch=2, seeds=[0, 1], amp_dtype=amp)
        images = stagevar.generate(session, presets("star")[name])
        assert images.dtype == torch.float32 and torch.isfinite(images).all()
