"""Checkpoint loaders: the official transformer ``.pth`` (flat state dict), the sharded 8B format (HF-style
``*.index.json`` + ``.safetensors`` or ``.bin`` shards), and the VAE checkpoint (``state_dict['vae']``).

Loading is strict: missing, unexpected or mis-shaped keys raise :class:`CheckpointMismatch` with a readable report.
Nothing here touches the network. A missing file raises ``FileNotFoundError(path)``; a file that is not a regular
file, cannot be read or is not a weights file, a malformed index, or an index naming a shard outside its folder
raises ``ValueError`` naming the path. Every path may be a ``str`` or an ``os.PathLike``.
"""

from __future__ import annotations

import json
import os
import stat

import torch
from torch import nn

from ..checkpoint import CheckpointMismatch, LoadReport, compare_keys
from .config import InfinityConfig, get_config
from .transformer import build_infinity
from .vae import BSQVAE

try:  # the optional "hf" extra: .safetensors files need it, .pth/.bin files do not
    import safetensors.torch as safetensors_torch
except ImportError:
    safetensors_torch = None


def _check_exists(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


def _check_regular(path: str) -> None:
    # a FIFO, a device or a /proc file would block or stream forever; only regular files are weights files
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, expected a checkpoint file")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{path}: not a regular file")


def _load_file(path) -> dict:
    path = _check_exists(path)
    _check_regular(path)
    try:
        if path.endswith(".safetensors"):
            if safetensors_torch is None:
                raise ImportError(f"{path}: reading .safetensors needs the 'safetensors' package")
            return safetensors_torch.load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - garbage files raise RuntimeError, EOFError, UnpicklingError, SafetensorError...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None


def _shard_path(root: str, shard, index: str) -> str:
    """The shard file ``shard`` of ``index``: a name inside the index's folder that is a regular file."""
    if not isinstance(shard, str) or not shard:
        raise ValueError(f"{index}: weight_map values must be shard file names, got {shard!r}")
    if os.path.isabs(shard):
        raise ValueError(f"{index}: shard {shard!r} is an absolute path; shards must lie in {root}")
    real_root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(real_root, shard))
    if os.path.commonpath([real_root, full]) != real_root or full == real_root:
        raise ValueError(f"{index}: shard {shard!r} resolves outside the checkpoint folder {root}")
    if not os.path.exists(full):
        raise FileNotFoundError(f"{index}: shard {shard!r} not found in {root}")
    if not stat.S_ISREG(os.stat(full).st_mode):
        raise ValueError(f"{index}: shard {shard!r} is not a regular file")
    return full


def _read_index(path: str) -> dict:
    _check_regular(path)
    if os.path.getsize(path) > 64 << 20:  # the 8B index is ~100 KB
        raise ValueError(f"{path}: index larger than 64 MiB, not a shard index")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: not a valid JSON shard index ({type(e).__name__}: {e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{path}: expected a JSON object with a non-empty 'weight_map' object of key -> shard file")
    for key in weight_map:
        if not isinstance(key, str):
            raise ValueError(f"{path}: weight_map keys must be strings")
    return weight_map


def read_state_dict(path) -> dict:
    """A flat state dict from a ``.pth``/``.bin``/``.safetensors`` file, an ``*.index.json`` of shards, or a
    directory holding one index (``model.safetensors.index.json`` or ``pytorch_model.bin.index.json``) or one file.

    Shards must be regular files inside the index's folder (no absolute names, no ``..`` or symlink escape)."""
    path = _check_exists(path)
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
        weight_map = _read_index(path)
        root = os.path.dirname(path) or "."
        files = {shard: _shard_path(root, shard, path) for shard in set(weight_map.values())}  # all checked first
        out: dict = {}
        for shard in sorted(files):
            part = _load_file(files[shard])
            if not isinstance(part, dict):
                raise ValueError(f"{files[shard]}: expected a state dict, got {type(part).__name__}")
            out.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
        missing = sorted(k for k in weight_map if k not in out)
        if missing:
            raise ValueError(f"{path}: {len(missing)} keys of weight_map are not in their shards, e.g. {missing[0]}")
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
            if safetensors_torch is None:
                raise ImportError("safetensors: writing .safetensors shards needs the 'safetensors' package")
            safetensors_torch.save_file(shard, os.path.join(directory, name))
        else:
            torch.save(shard, os.path.join(directory, name))
        weight_map.update({k: name for k in shard})
    index = os.path.join(directory, f"{prefix}.{ext}.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return index


def _default_cfg_uncond(model: nn.Module) -> torch.Tensor:
    # the model's own init of cfg_uncond (seeded, on CPU), for a model built on the meta device
    cfg = model.config
    unc = torch.empty(cfg.text_maxlen, cfg.text_channels)
    nn.init.trunc_normal_(unc, std=1.2, generator=torch.Generator("cpu").manual_seed(0))
    return unc / cfg.text_channels**0.5


def _fit_cfg_uncond(model: nn.Module, state_dict: dict) -> dict:
    # upstream Infinity.load_state_dict trims or extends cfg_uncond to text_maxlen
    if "cfg_uncond" in state_dict and hasattr(model, "cfg_uncond"):
        old, new = state_dict["cfg_uncond"], model.cfg_uncond.detach()
        if new.is_meta:
            new = _default_cfg_uncond(model).to(new.dtype)
        if old.shape[0] != new.shape[0] and old.shape[1:] == new.shape[1:]:
            if old.shape[0] < new.shape[0]:
                old = torch.cat((old.to(device=new.device, dtype=new.dtype), new[old.shape[0] :]))
            else:
                old = old[: new.shape[0]]
            state_dict = {**state_dict, "cfg_uncond": old}
    return state_dict


def _tensors_only(sd, what: str) -> dict:
    if not isinstance(sd, dict):
        raise ValueError(f"{what}: expected a state dict, got {type(sd).__name__}")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{what}: not a state dict (non-tensor entries such as {bad[0]!r})")
    return sd


def _is_meta(module: nn.Module) -> bool:
    return any(t.is_meta for t in module.state_dict().values())


def _fill(module: nn.Module, sd: dict, what: str) -> None:
    """Put the checkpoint tensors ``sd`` (matching keys and shapes) into ``module``, keeping each tensor's dtype.

    A module on the meta device is materialised by assignment (no random init, no double memory); every tensor of
    the module must then come from ``sd``."""
    own = module.state_dict()
    if _is_meta(module):
        absent = [k for k in own if k not in sd or tuple(sd[k].shape) != tuple(own[k].shape)]
        if absent:
            raise ValueError(f"{what}: {len(absent)} meta-device tensors not in the checkpoint: {absent[:5]}")
        cast = {k: sd[k].to(dtype=own[k].dtype) for k in own}
        module.load_state_dict(cast, strict=True, assign=True)
        return
    with torch.no_grad():
        for k, t in own.items():
            if k in sd and tuple(sd[k].shape) == tuple(t.shape):
                t.copy_(sd[k])


# buffers upstream's Infinity.load_state_dict drops from checkpoints (training-time masks)
_UPSTREAM_DROPPED = ("lvl_1L", "attn_bias_for_masking", "Infinity_visible_kvlen", "Infinity_invisible_qlen")


def load_infinity_weights(model: nn.Module, path_or_state_dict, strict: bool = True) -> LoadReport:
    """Load transformer weights (a path in any format of :func:`read_state_dict`, or a state dict) into ``model``
    keeping each parameter's dtype/device. ``strict``: raise :class:`CheckpointMismatch` unless all keys match.
    A model built on the meta device is materialised from the checkpoint (on CPU).

    Tolerated even when strict (listed in ``report.ignored``): the ``*.zero_k_bias`` buffers (zeros by definition)
    missing from a checkpoint, and the training-time buffers upstream drops on load."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        what = os.fspath(path_or_state_dict)
        sd = dict(_tensors_only(read_state_dict(path_or_state_dict), what))
    else:
        sd = dict(_tensors_only(path_or_state_dict, "Infinity state dict"))
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
    for k in zero:
        sd[k] = torch.zeros(own[k].shape, dtype=own[k].dtype)
    _fill(model, sd, "Infinity checkpoint")
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
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        what = os.fspath(path_or_state_dict)
        sd = _load_file(path_or_state_dict)
    else:
        what, sd = "VAE state dict", path_or_state_dict
    if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
        sd = sd[key]
    sd = _tensors_only(sd, what)
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
    _fill(vae, mapped, "VAE checkpoint")
    return rep


def load_infinity(
    config: InfinityConfig | str,
    model_path: str | os.PathLike | None = None,
    vae_path: str | os.PathLike | None = None,
    device="cpu",
    bf16_blocks: bool | None = None,
    strict: bool = True,
):
    """Build the transformer and VAE of ``config`` on ``device`` and load their checkpoints (either may be None for
    random weights). ``bf16_blocks`` (default: on CUDA) casts blocks to bf16 (upstream). Returns ``(model, vae)``.

    With a checkpoint and ``strict``, the module is built on the meta device and materialised from the file, so a
    missing, unreadable or mismatched file fails before any memory is spent on random weights."""
    cfg = get_config(config) if isinstance(config, str) else config
    for p in (model_path, vae_path):
        if p is not None:
            _check_exists(p)
    device = torch.device(device)
    # the VAE file (small) first: a bad VAE path fails before the transformer's gigabytes are read
    meta_vae = vae_path is not None and strict
    with torch.device("meta" if meta_vae else device):
        vae = BSQVAE(cfg.vae)
    vae.eval().requires_grad_(False)
    if vae_path is not None:
        load_vae_weights(vae, vae_path, strict=strict)
        vae.to(device)
    meta_model = model_path is not None and strict
    model = build_infinity(cfg, device="meta" if meta_model else device)
    if model_path is not None:
        load_infinity_weights(model, model_path, strict=strict)
        model.to(device)
    if bf16_blocks is None:
        bf16_blocks = device.type == "cuda"
    if bf16_blocks:
        model.blocks_to(torch.bfloat16)
    model.requires_grad_(False)
    vae.requires_grad_(False)
    return model, vae
