"""Fidelity of an accelerated image to the vanilla image of the same prompt and seed, and CLIP score to the prompt.

PSNR and SSIM come from ``torchmetrics`` (optional dependency, extra ``eval``). Against ``scikit-image`` it wins on
three counts: it works on torch tensors on the generating device (no copy to NumPy per image), it batches, and it
adds only ``lightning-utilities`` to torch (scikit-image pulls SciPy, imageio, networkx, tifffile and lazy_loader).
Its SSIM is Wang et al.'s (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), the common choice of papers.

The frequency split follows the paper's Fig. 11 (low- and high-frequency components of vanilla vs accelerated
images): the difference image's 2-D Fourier energy, split at a normalised radius ``rho = sqrt((fy / 0.5)^2 +
(fx / 0.5)^2)`` where ``fy``, ``fx`` are frequencies in cycles per pixel (``rho = 1`` is the Nyquist frequency on
an axis). ``rho <= 0.25`` (a quarter of Nyquist: structure spanning 8 pixels and more) is the low band, the rest the
high band. By Parseval the two band errors sum to the MSE, so they say where in frequency the MSE lies.
"""

from __future__ import annotations

import math

import torch

LOW_RADIUS = 0.25  # the low band: normalised radius <= a quarter of Nyquist (see the module docstring)


def _torchmetrics():
    try:
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
    except ImportError as err:
        raise ImportError(
            "stagevar eval needs torchmetrics for PSNR and SSIM: pip install 'stagevar-kernels[eval]' "
            "(or pip install torchmetrics)"
        ) from err
    return peak_signal_noise_ratio, structural_similarity_index_measure


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` (as written to disk) or float ``(B, 3, H, W)`` in [0, 1] -> float32 ``(B, 3, H, W)``."""
    if images.dtype == torch.uint8:
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images: uint8 images must be (B, H, W, 3), got {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2).float() / 255.0
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: float images must be (B, 3, H, W), got {tuple(images.shape)}")
    return images.float()


def _pair(test: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = as_float(test), as_float(reference)
    if a.shape != b.shape:
        raise ValueError(f"test: shape {tuple(a.shape)} differs from the reference's {tuple(b.shape)}")
    return a, b


def psnr(test: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB over data range 1: float32 ``(B,)``; ``inf`` where the images are identical."""
    a, b = _pair(test, reference)
    peak_signal_noise_ratio, _ = _torchmetrics()
    return peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(test: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5, data range 1), mean over channels: float32 ``(B,)``."""
    a, b = _pair(test, reference)
    _, structural_similarity_index_measure = _torchmetrics()
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"test: SSIM needs images of at least 11x11 pixels, got {tuple(a.shape[-2:])}")
    return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")


def radius_grid(height: int, width: int, device=None) -> torch.Tensor:
    """Normalised frequency radius of each ``torch.fft.fft2`` bin: float32 ``(H, W)``, 1 at Nyquist on an axis."""
    fy = torch.fft.fftfreq(height, device=device) / 0.5
    fx = torch.fft.fftfreq(width, device=device) / 0.5
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def band_errors(test: torch.Tensor, reference: torch.Tensor, low_radius: float = LOW_RADIUS) -> dict[str, torch.Tensor]:
    """Fig. 11's low/high-frequency error of ``test`` against ``reference``, per image.

    Returns float32 ``(B,)`` tensors:

    - ``low_mse``, ``high_mse``: the MSE of the difference carried by each band (``low + high = MSE``, Parseval);
    - ``low_rel``, ``high_rel``: each band's error energy over the reference's energy in that band (0 = no loss;
      the DC term is left out of the reference's low-band energy so that a flat image does not hide an error).
    """
    if not 0.0 < low_radius < math.sqrt(2.0):
        raise ValueError(f"low_radius: must lie in (0, sqrt(2)), got {low_radius}")
    a, b = _pair(test, reference)
    height, width = a.shape[-2:]
    low = radius_grid(height, width, a.device) <= low_radius  # (H, W) bool
    pixels = height * width
    diff_energy = torch.fft.fft2((a - b).double()).abs().square()  # (B, 3, H, W)
    ref_spec = torch.fft.fft2(b.double())
    ref_spec[..., 0, 0] = 0  # without the mean brightness
    ref_energy = ref_spec.abs().square()
    # Parseval: sum |FFT(d)|^2 = H * W * sum d^2, so dividing by (H * W) * (3 * H * W) gives the MSE share.
    norm = pixels * a.shape[1] * pixels
    low_mse = (diff_energy * low).sum(dim=(1, 2, 3)) / norm
    high_mse = (diff_energy * ~low).sum(dim=(1, 2, 3)) / norm
    tiny = torch.finfo(torch.float64).tiny
    low_rel = (diff_energy * low).sum(dim=(1, 2, 3)) / (ref_energy * low).sum(dim=(1, 2, 3)).clamp_min(tiny)
    high_rel = (diff_energy * ~low).sum(dim=(1, 2, 3)) / (ref_energy * ~low).sum(dim=(1, 2, 3)).clamp_min(tiny)
    values = {"low_mse": low_mse, "high_mse": high_mse, "low_rel": low_rel, "high_rel": high_rel}
    return {k: v.float() for k, v in values.items()}


def fidelity(test: torch.Tensor, reference: torch.Tensor, low_radius: float = LOW_RADIUS) -> list[dict[str, float]]:
    """PSNR, SSIM and the band errors of each image of ``test`` against ``reference``: one dict per image.

    PSNR is ``None`` for identical images (infinite; JSON has no infinity).
    """
    values = {"psnr": psnr(test, reference), "ssim": ssim(test, reference), **band_errors(test, reference, low_radius)}
    rows = []
    for i in range(values["psnr"].shape[0]):
        row = {k: float(v[i]) for k, v in values.items()}
        row["psnr"] = None if math.isinf(row["psnr"]) else row["psnr"]
        rows.append(row)
    return rows


class ClipScorer:
    """CLIP score of images to their prompts from a local CLIP folder (``transformers``, optional dependency).

    The score is torchmetrics' and the CLIPScore paper's ``100 * max(cos(image, text), 0)``; prompts longer than
    CLIP's 77 tokens are truncated.
    """

    def __init__(self, path: str, device="cpu"):
        try:
            from transformers import CLIPModel, CLIPProcessor
        except ImportError as err:
            raise ImportError(
                "--clip needs transformers: pip install 'stagevar-kernels[hf]' (or pip install transformers)"
            ) from err
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(path, local_files_only=True)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> list[float]:
        """``images`` uint8 ``(B, H, W, 3)``, ``prompts`` B strings -> B scores."""
        if images.shape[0] != len(prompts):
            raise ValueError(f"prompts: {len(prompts)} prompts for {images.shape[0]} images")
        inputs = self.processor(
            text=list(prompts),
            images=[img.cpu().numpy() for img in images],
            return_tensors="pt",
            padding=True,
            truncation=True,
        ).to(self.device)
        out = self.model(**inputs)
        img = torch.nn.functional.normalize(out.image_embeds.float(), dim=-1)
        txt = torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)
        return (100 * (img * txt).sum(-1).clamp_min(0)).tolist()
