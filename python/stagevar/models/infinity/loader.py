"""Checkpoint loaders: the official transformer ``.pth`` (flat state dict), the sharded 8B format (HF-style
``*.index.json`` + ``.safetensors`` or ``.bin`` shards), and the VAE checkpoint (``state_dict['vae']``).

Loading is strict: missing, unexpected or mis-shaped keys raise :class:`CheckpointMismatch` with a readable report.
Nothing here touches the network. A missing file raises ``FileNotFoundError(path)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import InfinityConfig, get_config


@dataclass
class LoadReport:
    """What a load did: ``missing``/``unexpected`` key names, ``mismatched`` ``(key, ckpt_shape, model_shape)``,
    ``ignored`` keys deliberately skipped (e.g. the VAE encoder)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        def few(keys, n=10):
            s = ", ".join(keys[:n])
            return s + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")

        lines = []
        if self.missing:
            lines.append(f"missing {len(self.missing)} keys: {few(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)} keys: {few(self.unexpected)}")
        if self.mismatched:
            lines.append(
                "shape mismatch: " + few([f"{k} ckpt {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched])
            )
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} keys (not part of this model)")
        return "; ".join(lines) if lines else "all keys matched"


class CheckpointMismatch(ValueError):
    def __init__(self, what: str, report: LoadReport):
        super().__init__(f"{what}: {report}")
        self.report = report


def _check_exists(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(path)


def _load_file(path: str) -> dict:
    _check_exists(path)
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ImportError(f"{path}: reading .safetensors needs the 'safetensors' package") from e
        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_state_dict(path: str) -> dict:
    """A flat state dict from a ``.pth``/``.bin``/``.safetensors`` file, an ``*.index.json`` of shards, or a
    directory holding one index (``model.safetensors.index.json`` or ``pytorch_model.bin.index.json``) or one file."""
    _check_exists(path)
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        idx = [n for n in names if n.endswith(".index.json")]
        if idx:
            return read_state_dict(os.path.join(path, idx[0]))
        files = [n for n in names if n.endswith((".safetensors", ".bin", ".pth"))]
        if len(files) != 1:
            raise FileNotFoundError(f"{path}: no *.index.json and not exactly one weight file")
        return read_state_dict(os.path.join(path, files[0]))
    if path.endswith(".index.json"):
        with open(path) as f:
            weight_map = json.load(f)["weight_map"]
        root = os.path.dirname(path)
        out: dict = {}
        for shard in sorted(set(weight_map.values())):
            part = _load_file(os.path.join(root, shard))
            out.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
        return out
    return _load_file(path)


def save_sharded(state_dict: dict, directory: str, max_shard_bytes: int = 2 << 30, safetensors: bool = True) -> str:
    """Write ``state_dict`` in the HF sharded layout (for tests and conversions). Returns the index path."""
    os.makedirs(directory, exist_ok=True)
    shards, cur, size = [], {}, 0
    for k, v in state_dict.items():
        nbytes = v.numel() * v.element_size()
        if cur and size + nbytes > max_shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v.detach().cpu().contiguous()
        size += nbytes
    shards.append(cur)
    ext = "safetensors" if safetensors else "bin"
    prefix = "model" if safetensors else "pytorch_model"
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.{ext}"
        if safetensors:
            from safetensors.torch import save_file

            save_file(shard, os.path.join(directory, name))
        else:
            torch.save(shard, os.path.join(directory, name))
        weight_map.update({k: name for k in shard})
    index = os.path.join(directory, f"{prefix}.{ext}.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return index


def compare_keys(model: nn.Module, state_dict: dict) -> LoadReport:
    own = model.state_dict()
    rep = LoadReport()
    rep.missing = [k for k in own if k not in state_dict]
    rep.unexpected = [k for k in state_dict if k not in own]
    rep.mismatched = [
        (k, tuple(state_dict[k].shape), tuple(own[k].shape))
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    return rep


def _fit_cfg_uncond(model: nn.Module, state_dict: dict) -> dict:
    # upstream Infinity.load_state_dict trims or extends cfg_uncond to text_maxlen
    if "cfg_uncond" in state_dict and hasattr(model, "cfg_uncond"):
        old, new = state_dict["cfg_uncond"], model.cfg_uncond.detach()
        if old.shape[0] != new.shape[0] and old.shape[1:] == new.shape[1:]:
            if old.shape[0] < new.shape[0]:
                old = torch.cat((old.to(device=new.device, dtype=new.dtype), new[old.shape[0] :]))
            else:
                old = old[: new.shape[0]]
            state_dict = {**state_dict, "cfg_uncond": old}
    return state_dict


# buffers upstream's Infinity.load_state_dict drops from checkpoints (training-time masks)
_UPSTREAM_DROPPED = ("lvl_1L", "attn_bias_for_masking", "Infinity_visible_kvlen", "Infinity_invisible_qlen")


def load_infinity_weights(model: nn.Module, path_or_state_dict, strict: bool = True) -> LoadReport:
    """Load transformer weights (a path in any format of :func:`read_state_dict`, or a state dict) into ``model``
    keeping each parameter's dtype/device. ``strict``: raise :class:`CheckpointMismatch` unless all keys match.

    Tolerated even when strict (listed in ``report.ignored``): the ``*.zero_k_bias`` buffers (zeros by definition)
    missing from a checkpoint, and the training-time buffers upstream drops on load."""
    sd = read_state_dict(path_or_state_dict) if isinstance(path_or_state_dict, str) else dict(path_or_state_dict)
    sd = _fit_cfg_uncond(model, sd)
    dropped = [k for k in _UPSTREAM_DROPPED if k in sd]
    for k in dropped:
        sd.pop(k)
    rep = compare_keys(model, sd)
    zero = [k for k in rep.missing if k.endswith("zero_k_bias")]
    rep.missing = [k for k in rep.missing if k not in zero]
    rep.ignored = dropped + zero
    if strict and not rep.ok:
        raise CheckpointMismatch("Infinity checkpoint", rep)
    own = model.state_dict()
    with torch.no_grad():
        for k, t in own.items():
            if k in sd and tuple(sd[k].shape) == tuple(t.shape):
                t.copy_(sd[k])
    return rep


def _normalize_vae_key(key: str, own: dict) -> str:
    # the official load_cnn also accepts keys saved without the Conv/Normalize wrappers (x.weight -> x.conv.weight)
    if key in own:
        return key
    head, _, last = key.rpartition(".")
    for wrap in ("conv", "norm"):
        cand = f"{head}.{wrap}.{last}"
        if cand in own:
            return cand
    return key


def load_vae_weights(vae: nn.Module, path_or_state_dict, strict: bool = True, key: str = "vae") -> LoadReport:
    """Load an official VAE checkpoint (``torch.load(path)['vae']``, or a flat dict) into our decoder-only VAE.
    Encoder and quantizer keys are ignored (reported in ``ignored``); decoder keys must match when ``strict``."""
    if isinstance(path_or_state_dict, str):
        sd = _load_file(path_or_state_dict)
    else:
        sd = dict(path_or_state_dict)
    if key in sd and isinstance(sd[key], dict):
        sd = sd[key]
    own = vae.state_dict()
    rep = LoadReport()
    mapped = {}
    for k, v in sd.items():
        if not k.startswith("decoder."):
            rep.ignored.append(k)
            continue
        mapped[_normalize_vae_key(k, own)] = v
    r2 = compare_keys(vae, mapped)
    rep.missing, rep.unexpected, rep.mismatched = r2.missing, r2.unexpected, r2.mismatched
    if strict and not rep.ok:
        raise CheckpointMismatch("VAE checkpoint", rep)
    with torch.no_grad():
        for k, t in own.items():
            if k in mapped and tuple(mapped[k].shape) == tuple(t.shape):
                t.copy_(mapped[k])
    return rep


def load_infinity(
    config: InfinityConfig | str,
    model_path: str | None = None,
    vae_path: str | None = None,
    device="cpu",
    bf16_blocks: bool | None = None,
    strict: bool = True,
):
    """Build the transformer and VAE of ``config`` on ``device`` and load their checkpoints (either may be None for
    random weights). ``bf16_blocks`` (default: on CUDA) casts blocks to bf16 (upstream). Returns ``(model, vae)``."""
    from .transformer import build_infinity
    from .vae import BSQVAE

    cfg = get_config(config) if isinstance(config, str) else config
    for p in (model_path, vae_path):
        if p is not None:
            _check_exists(p)
    device = torch.device(device)
    model = build_infinity(cfg, device=device)
    if model_path is not None:
        load_infinity_weights(model, model_path, strict=strict)
    if bf16_blocks is None:
        bf16_blocks = device.type == "cuda"
    if bf16_blocks:
        model.blocks_to(torch.bfloat16)
    with torch.device(device):
        vae = BSQVAE(cfg.vae)
    vae.eval().requires_grad_(False)
    if vae_path is not None:
        load_vae_weights(vae, vae_path, strict=strict)
    return model, vae
