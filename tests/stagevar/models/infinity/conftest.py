"""Fixtures of the Infinity tests: tiny random-weight models (fp32, CPU) and text features."""

import pytest
import torch

from stagevar.models.infinity import BSQVAE, build_infinity


def _randomize_(model, seed=0):
    # default inits leave biases zero and q/v biases zero: fill every tensor so the test exercises each parameter
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale_mul_1H11"):
                p.copy_(torch.rand(p.shape, generator=g) * 3)
            elif p.ndim >= 2 and "ada_gss" not in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith("norm.weight") else 0.0))
    return model


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def tiny():
    torch.manual_seed(0)
    m = _randomize_(build_infinity("tiny"))
    v = BSQVAE(m.config.vae).eval()
    return m, v


@pytest.fixture(scope="session")
def tiny8():
    torch.manual_seed(1)
    m = _randomize_(build_infinity("tiny_8b"), seed=1)
    v = BSQVAE(m.config.vae).eval()
    return m, v
