"""The generation engine's static state: the preallocated self-attention KV cache and the launch counter."""

from .kv import StaticKV

__all__ = ["StaticKV"]
