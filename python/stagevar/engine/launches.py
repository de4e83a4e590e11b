"""Count the kernel-launching ops a piece of eager code dispatches (on any device, a CPU included).

At batch 1 on a GPU the early scale steps are launch-bound: what a step costs there is set by how many kernels it
launches, and that number does not depend on the device, so it can be counted on a CPU. :class:`LaunchCounter` is a
``TorchDispatchMode`` that records every op reaching the dispatcher's Python mode except those that launch nothing:
views (ops whose schema returns an alias of an input), ``detach`` and the allocation / metadata ops below. A
registered custom op (``torch.ops.stagevar.*``) counts once, whatever its CPU reference does inside.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Ops that allocate or relabel memory without running a kernel (or whose kernel is a no-op on every backend).
_FREE = {
    "aten.detach",
    "aten.alias",
    "aten.lift_fresh",
    "aten._unsafe_view",
    "aten.empty",
    "aten.empty_strided",
    "aten.empty_like",
    "aten.new_empty",
    "aten.new_empty_strided",
    "aten.resize_",
    "aten.set_",
    "aten.sym_size",
    "aten.sym_stride",
    "aten.sym_numel",
    "aten.sym_storage_offset",
    "aten.is_same_size",
    "aten.is_nonzero",
    "aten._has_compatible_shallow_copy_type",
}


def op_name(func) -> str:
    """``aten.add`` for ``aten.add.Tensor``: the packet's qualified name."""
    return f"{func.namespace}.{func._opname}"


def launches(func) -> bool:
    """Whether dispatching ``func`` (an ``OpOverload``) runs a kernel: not a view, not an allocation."""
    return not func.is_view and op_name(func) not in _FREE


class LaunchCounter(TorchDispatchMode):
    """``with LaunchCounter() as c: ...`` then ``c.total`` (kernel-launching ops) and ``c.ops`` (a Counter by op name,
    e.g. ``c.ops["aten.cat"]``). Eager code only (under ``torch.compile`` the mode sees the compiled graph's ops)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if launches(func):
            self.ops[op_name(func)] += 1
        return func(*args, **(kwargs or {}))


def count_launches(fn, *args, **kwargs) -> tuple[object, LaunchCounter]:
    """Run ``fn(*args, **kwargs)`` under a :class:`LaunchCounter`; returns ``(result, counter)``."""
    with torch.inference_mode(), LaunchCounter() as counter:
        out = fn(*args, **kwargs)
    return out, counter
