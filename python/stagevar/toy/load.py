"""A trained toy model from its folder, as a session factory, and its checker scores under any schedule."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..loop import generate
from ..models.infinity.loader import load_infinity, read_state_dict
from ..models.infinity.session import new_session
from ..schedule import resolve
from ..zoo import Built
from . import checker, data
from .model import ToyConfig
from .text import TextEncoder

EVAL_STREAM = 99  # captions for evaluation and the default prompts (the training streams are 1000+ and 2000+)
DEFAULTS = {"cfg_list": 3.0, "tau_list": 0.5}
WEIGHT_FILES = ("infinity.safetensors", "tokenizer.safetensors", "text.safetensors")  # what training writes
CHECKSUMS = "SHA256SUMS"  # one "<sha256>  <file>" line per weight file


def sha256(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(folder: str | Path) -> None:
    """Check every file listed in ``folder/SHA256SUMS``; ``ValueError`` naming the file on a mismatch."""
    folder = Path(folder)
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise FileNotFoundError(str(sums))
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name in [*WEIGHT_FILES, "config.json"]:
        if name not in listed:
            raise ValueError(f"{sums}: no checksum for {name}")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(str(path))
        if sha256(path) != digest:
            raise ValueError(f"{path}: SHA-256 does not match {sums} (corrupt or modified file)")


@dataclass
class ToyModel(Built):
    """A loaded toy model. ``new_session(batch, seed, captions=None, **kw)`` starts a generation of ``captions``
    (default: the first ``batch`` evaluation captions); item ``b`` is seeded ``seed + b``."""

    config: ToyConfig | None = None
    text: TextEncoder | None = None

    def captions_session(self, captions: list[str], seeds: list[int], **kw):
        """A session generating ``captions`` with one seed per caption (``DEFAULTS`` unless overridden)."""
        with torch.no_grad():
            feats = self.text.encode(list(captions))
        return new_session(self.model, self.vae, self.config.scales, feats, seeds=list(seeds), **(DEFAULTS | kw))


def eval_captions(n: int, start: int = 0) -> tuple[list[str], list[data.Spec]]:
    """Captions and specs ``start .. start + n - 1`` of the evaluation stream."""
    s = data.specs(EVAL_STREAM, range(start, start + n))
    return [data.caption(x) for x in s], s


def load(folder: str | Path, device="cpu") -> ToyModel:
    """Load a training result folder (checksums verified first) onto ``device``. The transformer and decoder go
    through the Infinity loaders (:func:`~stagevar.models.infinity.loader.load_infinity`, strict)."""
    folder = Path(folder)
    verify(folder)
    config = ToyConfig.from_json(json.loads((folder / "config.json").read_text())["model"])
    device = torch.device(device)
    model, vae = load_infinity(
        config.infinity, str(folder / "infinity.safetensors"), str(folder / "tokenizer.safetensors"), device
    )
    with torch.device(device):
        text = TextEncoder(config.infinity.text_channels, config.text_layers, config.text_heads)
    text.load_state_dict(read_state_dict(str(folder / "text.safetensors")))
    text.eval().requires_grad_(False)

    toy = ToyModel(config.name, "infinity", model, vae, None, config=config, text=text)

    def toy_session(batch: int = 1, seed: int = 0, captions: list[str] | None = None, **kw):
        caps = eval_captions(batch)[0] if captions is None else list(captions)
        if len(caps) != batch:
            raise ValueError(f"captions: expected {batch}, got {len(caps)}")
        return toy.captions_session(caps, [seed + b for b in range(batch)], **kw)

    toy.new_session = toy_session
    return toy


def evaluate(toy: ToyModel, schedule="vanilla", n: int = 32, seed: int = 0, batch: int = 16, **kw) -> dict:
    """Generate the first ``n`` evaluation captions under ``schedule`` (a preset name, file or
    :class:`~stagevar.schedule.StageSchedule`) with seeds ``seed + i`` and score them with the checker.
    Returns the mean of each criterion over the captions it applies to, in [0, 1], and ``n``."""
    if n < 1 or batch < 1:
        raise ValueError(f"n, batch: expected positive ints, got {n}, {batch}")
    sched = resolve(schedule, "infinity")
    captions, specs = eval_captions(n)
    scores = []
    for start in range(0, n, batch):
        caps = captions[start : start + batch]
        session = toy.captions_session(caps, [seed + start + i for i in range(len(caps))], **kw)
        images = generate(session, sched)
        scores += [checker.score(img, spec) for img, spec in zip(images, specs[start : start + batch])]
    return checker.mean_scores(scores) | {"n": n}
