"""Fidelity metrics on synthetic image pairs with known answers."""

import math

import pytest
import torch

from stagevar.evaluation import metrics

pytest.importorskip("torchmetrics")


def _image(seed=0, size=40):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(20, 236, (2, size, size, 3), dtype=torch.uint8, generator=g)


def _wave(cycles: int, size: int = 40, amplitude: float = 0.1) -> torch.Tensor:
    """A float (1, 3, size, size) cosine along x with ``cycles`` periods across the image, around 0.5."""
    x = torch.arange(size, dtype=torch.float64)
    row = 0.5 + amplitude * torch.cos(2 * math.pi * cycles * x / size)
    return row.expand(size, size).expand(1, 3, size, size).float()


def test_identical_images():
    a = _image()
    assert torch.isinf(metrics.psnr(a, a)).all()
    assert metrics.ssim(a, a).tolist() == pytest.approx([1.0, 1.0])
    bands = metrics.band_errors(a, a)
    assert all(v.abs().max() == 0 for v in bands.values())
    rows = metrics.fidelity(a, a)
    assert [r["psnr"] for r in rows] == [None, None] and rows[0]["ssim"] == pytest.approx(1.0)


def test_constant_offset_has_known_psnr_and_lies_in_the_low_band():
    a = _image()
    b = a + 10  # no wrap: values lie in [20, 236)
    expected = 20 * math.log10(255 / 10)  # MSE = (10 / 255)^2
    assert metrics.psnr(b, a).tolist() == pytest.approx([expected] * 2, abs=1e-3)
    bands = metrics.band_errors(b, a)
    assert bands["low_mse"].tolist() == pytest.approx([(10 / 255) ** 2] * 2, rel=1e-5)
    assert bands["high_mse"].abs().max() < 1e-10


def test_pure_high_frequency_error_is_all_in_the_high_band():
    a = _image().permute(0, 3, 1, 2).float() / 255
    checker = ((torch.arange(40)[:, None] + torch.arange(40)[None, :]) % 2).float() * 0.04 - 0.02  # Nyquist
    b = a + checker
    bands = metrics.band_errors(b, a)
    mse = ((b - a) ** 2).mean(dim=(1, 2, 3))
    assert bands["low_mse"].abs().max() < 1e-10
    assert bands["high_mse"].tolist() == pytest.approx(mse.tolist(), rel=1e-5)


@pytest.mark.parametrize("cycles,band", [(4, "low"), (8, "high")])  # radii 0.2 and 0.4 of Nyquist
def test_a_wave_falls_in_the_band_of_its_radius(cycles, band):
    base = _wave(1, amplitude=0.2)
    bands = metrics.band_errors(base + _wave(cycles) - 0.5, base)
    other = "high" if band == "low" else "low"
    assert bands[f"{band}_mse"].item() == pytest.approx(0.1**2 / 2, rel=1e-4)  # mean of (0.1 cos)^2
    assert bands[f"{other}_mse"].item() < 1e-12


def test_losing_a_band_gives_relative_error_one_there():
    reference = _wave(2, amplitude=0.2) + _wave(12, amplitude=0.1) - 0.5  # a low and a high component
    blurred = _wave(2, amplitude=0.2)  # the high component lost
    bands = metrics.band_errors(blurred, reference)
    assert bands["high_rel"].item() == pytest.approx(1.0, rel=1e-5)
    assert bands["low_rel"].item() < 1e-10


def test_band_errors_sum_to_the_mse():
    a, b = _image(0), _image(1)
    bands = metrics.band_errors(a, b, low_radius=0.4)
    mse = ((a.float() - b.float()) / 255).square().mean(dim=(1, 2, 3))
    assert (bands["low_mse"] + bands["high_mse"]).tolist() == pytest.approx(mse.tolist(), rel=1e-5)
    assert (bands["low_mse"] > 0).all() and (bands["high_mse"] > 0).all()


def test_ssim_orders_noise_levels():
    clean = _image().permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(clean.shape, generator=g)
    mild, strong = (clean + 0.02 * noise).clamp(0, 1), (clean + 0.2 * noise).clamp(0, 1)
    s_mild, s_strong = metrics.ssim(mild, clean), metrics.ssim(strong, clean)
    assert (s_strong < s_mild).all() and (s_mild < 1).all()
    assert metrics.ssim(clean, mild).tolist() == pytest.approx(s_mild.tolist(), abs=1e-6)  # symmetric


def test_uint8_and_float_inputs_agree():
    a, b = _image(0), _image(1)
    fa, fb = a.permute(0, 3, 1, 2).float() / 255, b.permute(0, 3, 1, 2).float() / 255
    assert metrics.psnr(a, b).tolist() == pytest.approx(metrics.psnr(fa, fb).tolist())


def test_bad_inputs_raise():
    a = _image()
    with pytest.raises(ValueError, match="^test"):
        metrics.psnr(a[:, :20], a)
    with pytest.raises(ValueError, match="^images"):
        metrics.psnr(a[..., :2], a[..., :2])
    with pytest.raises(ValueError, match="^test: SSIM"):
        metrics.ssim(a[:, :8, :8], a[:, :8, :8])
    with pytest.raises(ValueError, match="^low_radius"):
        metrics.band_errors(a, a, low_radius=0)
