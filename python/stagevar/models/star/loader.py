"""Loading the official STAR and VQ-VAE checkpoints into our modules (or any module with the same names).

Layouts accepted for the transformer: the training checkpoint ``{"trainer": {"var_wo_ddp": state_dict, ...}, ...}``
(what ``sample.py`` reads) or a flat state dict. Keys are checked strictly, with a readable report.

The **sampler** checkpoint (``var_rope_d30_1024_sampler_mask_...``, ``enable_adaptive_norm=True``: extra keys
``word_embed_head``, ``feat_extract_blocks``, ``head_logits2``, ...) is refused: its causal-driven sampling head is
not supported. Use the non-sampler STAR checkpoint (the one ``sample.py`` loads).
"""

from __future__ import annotations

import os
import pickle
import stat

import torch
from torch import nn

from ..checkpoint import CheckpointMismatch, compare_keys
from .config import SAMPLER_KEY_PREFIXES


def _head(keys, n=12) -> str:
    keys = list(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(str(k) for k in keys[:n]) + more


def read_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False):
    """``torch.load`` on CPU. Missing file: FileNotFoundError naming the path.

    ``allow_pickle=False`` loads with ``weights_only=True`` (enough for the released STAR checkpoint, whose
    ``trainer`` entry holds only state dicts and plain config values); checkpoints that pickle other objects then
    fail with a ValueError that says to pass ``allow_pickle=True`` for trusted files. Zip-format files are
    memory-mapped, so the VAE and optimizer states stored beside the transformer are not read into memory.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, expected a checkpoint file")
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block or stream forever
        raise ValueError(f"{path}: not a regular file")
    try:
        try:  # memory-mapped: the training checkpoint also holds the VAE and optimizer states we never read
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e).lower() and "weights only" not in str(e).lower():
            raise ValueError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
        raise ValueError(
            f"{path}: holds objects other than tensors, refused by weights_only loading; if you trust the file, "
            f"load it with allow_pickle=True ({str(e).splitlines()[0]})"
        ) from e
    except Exception as e:  # noqa: BLE001 - truncated or garbage files raise RuntimeError, EOFError, OSError, ...
        raise ValueError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0][:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def extract_star_state_dict(obj) -> dict[str, torch.Tensor]:
    """The transformer state dict from a nested training checkpoint or a flat dict; refuses the sampler model."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ValueError(f"STAR checkpoint: expected a dict, got {type(obj).__name__}")
    if "trainer" in obj:
        trainer = obj["trainer"]
        if not isinstance(trainer, dict) or "var_wo_ddp" not in trainer:
            raise ValueError("STAR checkpoint: has 'trainer' but no 'trainer'/'var_wo_ddp' state dict")
        obj = trainer["var_wo_ddp"]
    sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in obj.items()}
    bad = sorted(k for k in sd if k.startswith(SAMPLER_KEY_PREFIXES))
    if bad:
        raise ValueError(
            "STAR checkpoint: this is the sampler checkpoint (causal-driven sampling head, enable_adaptive_norm=True; "
            f"keys such as {_head(bad, 4)}). The sampler head is not supported: use the non-sampler STAR checkpoint "
            "(the one sample.py loads)."
        )
    non_tensor = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise ValueError(f"STAR checkpoint: not a state dict (non-tensor entries: {_head(non_tensor, 4)})")
    return sd


def _on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in model.state_dict().values())


def load_into(model: nn.Module, sd: dict, *, strict: bool = True, what: str = "state dict"):
    """``model.load_state_dict`` after a readable strict check (raises
    :class:`~stagevar.models.checkpoint.CheckpointMismatch`; mis-shaped keys raise it even when not ``strict``).

    A model built on the meta device gets the checkpoint's tensors assigned (``assign=True``): no double init.
    """
    if not isinstance(sd, dict) or any(not isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{what}: not a state dict of tensors")
    report = compare_keys(model, sd)
    if report.mismatched or (strict and not report.ok):
        raise CheckpointMismatch(what, report)
    meta = _on_meta(model)
    result = nn.Module.load_state_dict(model, sd, strict=strict, assign=meta)
    if meta and _on_meta(model):
        left = [k for k, t in model.state_dict().items() if t.is_meta]
        raise ValueError(f"{what}: {len(left)} tensors of a meta-device model not in the checkpoint: {left[:5]}")
    return result


def load_star_weights(model: nn.Module, path_or_state, *, strict: bool = True, allow_pickle: bool = False) -> nn.Module:
    """Load a STAR transformer checkpoint (path, loaded object, or state dict) into ``model``; returns ``model``."""
    obj = (
        read_checkpoint(path_or_state, allow_pickle=allow_pickle)
        if isinstance(path_or_state, (str, os.PathLike))
        else path_or_state
    )
    load_into(model, extract_star_state_dict(obj), strict=strict, what="STAR transformer")
    return model


def load_vqvae_weights(vae: nn.Module, path_or_state, *, strict: bool = True, allow_pickle: bool = False) -> nn.Module:
    """Load VAR's ``vae_ch160v4096z32.pth`` (or STAR's ``VAE.pth``) into ``vae``; returns ``vae``.

    ``quantize.ema_vocab_hit_SV`` (a training statistic, one row per scale) is replaced by the model's own buffer
    when its number of scales differs (the 10-scale VAR checkpoint in a 14-scale STAR model), as upstream.
    """
    sd = (
        read_checkpoint(path_or_state, allow_pickle=allow_pickle)
        if isinstance(path_or_state, (str, os.PathLike))
        else path_or_state
    )
    if isinstance(sd, nn.Module):
        sd = sd.state_dict()
    if not isinstance(sd, dict) or any(not isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"VQ-VAE checkpoint: expected a state dict of tensors, got {type(sd).__name__}")
    sd = dict(sd)
    key = "quantize.ema_vocab_hit_SV"
    own = vae.state_dict()
    if key in sd and key in own and sd[key].shape[0] != own[key].shape[0]:
        sd[key] = torch.zeros(own[key].shape, dtype=own[key].dtype)  # a training statistic; unused at inference
    load_into(vae, sd, strict=strict, what="VQ-VAE")
    return vae
