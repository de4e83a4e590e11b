"""The generation engine's static state: the preallocated self-attention KV cache and the launch counter."""

from .kv import StaticKV
from .launches import LaunchCounter, count_launches

__all__ = ["LaunchCounter", "StaticKV", "count_launches"]
