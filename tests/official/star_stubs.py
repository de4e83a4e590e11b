"""Import the official STAR-T2I code (``$STAR_REPO``) for the tests in this folder, with stand-ins for the
modules it imports but the model path never uses (``timm``; ``huggingface_hub`` if absent).

The official builder replaces ``reset_parameters`` of torch's Linear/Conv/Norm classes with a no-op for the whole
process; :func:`build_official` puts the originals back right after building, so other tests are unaffected.
"""

from __future__ import annotations

import importlib
import sys
import types
from contextlib import contextmanager

from torch import nn

_PATCHED = (
    nn.Linear,
    nn.LayerNorm,
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    nn.Conv1d,
    nn.Conv2d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
)
_OWNED_PREFIXES = ("models", "dist", "utils", "timm")


def _stub(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    m.__path__ = []  # importable as a package
    return m


def _unused(*_a, **_k):
    raise RuntimeError("star_stubs: stand-in for a timm object the STAR model path does not use")


def _stand_ins() -> dict[str, types.ModuleType]:
    mods = {
        "timm": _stub("timm"),
        "timm.models": _stub("timm.models"),
        "timm.models.vision_transformer": _stub(
            "timm.models.vision_transformer", Mlp=_unused, PatchEmbed=_unused, _cfg=_unused
        ),
        "timm.models.layers": _stub("timm.models.layers", DropPath=_unused, to_2tuple=_unused, trunc_normal_=_unused),
        "timm.models.registry": _stub("timm.models.registry", register_model=lambda f: f),
    }
    try:
        from huggingface_hub import PyTorchModelHubMixin  # noqa: F401
    except ImportError:
        mods["huggingface_hub"] = _stub("huggingface_hub", PyTorchModelHubMixin=type("PyTorchModelHubMixin", (), {}))
    return mods


@contextmanager
def official_star(repo: str):
    """Yields a namespace with the official ``VAR``, ``VQVAE``, ``build_vae_var`` and ``dist`` modules' objects;
    removes everything it imported (and the stand-ins) on exit."""
    before = set(sys.modules)
    sys.path.insert(0, repo)
    stand_ins = {k: v for k, v in _stand_ins().items() if k not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        ns = types.SimpleNamespace(
            build_vae_var=importlib.import_module("models").build_vae_var,
            var_drop=importlib.import_module("models.var_drop"),
            vqvae=importlib.import_module("models.vqvae"),
            dist=importlib.import_module("dist"),
        )
        yield ns
    finally:
        sys.path.remove(repo)
        for k in set(sys.modules) - before:
            if k in stand_ins or k.split(".")[0] in _OWNED_PREFIXES:
                del sys.modules[k]


def build_official(ns, **kwargs):
    """``build_vae_var(**kwargs)`` without leaving torch's ``reset_parameters`` patched. Returns (vae, var)."""
    saved = {c: c.__dict__.get("reset_parameters") for c in _PATCHED}
    try:
        return ns.build_vae_var(**kwargs)
    finally:
        for c, f in saved.items():
            if f is None:
                if "reset_parameters" in c.__dict__:
                    delattr(c, "reset_parameters")
            else:
                c.reset_parameters = f
