"""A CPU stand-in for a CUDA graph: the captured region recorded as a tape of aten ops and re-executed on replay.

What makes a CUDA graph a CUDA graph is reproduced: every tensor the region reads or writes keeps its address
(the tape holds the very tensor objects), Python is not re-run on replay (Python ints, shapes and branches are
baked in), and only the recorded kernels run again, reading whatever their input tensors hold at replay time. A
region that a GPU could not capture fails here too: host synchronisation (``.item()``, ``nonzero``, boolean
indexing, ``equal``...) and host data copied in (``torch.tensor(...)``) raise :class:`CaptureError` while
recording. That is the CPU proof that a region is capturable; only a GPU run proves the speed.

One difference from a CUDA graph: recording runs the region (a dispatch mode must execute ops to learn their
outputs), whereas a CUDA capture does not. The engine replays once after capturing either way, so a captured region
must be idempotent: re-running it on the same inputs leaves the same state (true of a region that reads its static
input and the workspace and writes only its outputs and fixed KV-cache positions).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .launches import op_name


class CaptureError(RuntimeError):
    """An op in a captured region that a CUDA graph cannot hold (it synchronises with the host)."""


# Ops whose result the host must read before it can continue (stream capture fails on them), or whose output
# shape depends on tensor values (so no fixed-address replay is possible).
_HOST_SYNC = {
    "aten._local_scalar_dense": "reads a tensor's value on the host (.item(), int(t), float(t), .tolist())",
    "aten.item": "reads a tensor's value on the host",
    "aten.nonzero": "has a data-dependent output shape",
    "aten.nonzero_static": "reads a tensor's value on the host",
    "aten.masked_select": "has a data-dependent output shape",
    "aten.equal": "returns a Python bool computed from tensor values",
    "aten.is_nonzero": "returns a Python bool computed from tensor values (if t: ...)",
    "aten.unique": "has a data-dependent output shape",
    "aten._unique": "has a data-dependent output shape",
    "aten._unique2": "has a data-dependent output shape",
    "aten.unique_consecutive": "has a data-dependent output shape",
    "aten.unique_dim": "has a data-dependent output shape",
    "aten.repeat_interleave": "needs its output size from the host unless output_size is given",
    "aten.lift_fresh": "copies host data to the device (torch.tensor(...)), which stream capture does not allow",
}
_BOOL_INDEXED = {"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"}
_ALLOCATIONS = {"aten.empty", "aten.empty_like", "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided"}


def _check_capturable(func, args, kwargs) -> None:
    name = op_name(func)
    if name in _HOST_SYNC and not (name == "aten.repeat_interleave" and kwargs.get("output_size") is not None):
        raise CaptureError(f"{func} in a captured region: it {_HOST_SYNC[name]}, so a CUDA graph cannot capture it")
    if name in _BOOL_INDEXED:
        leaves, _ = tree_flatten((args, kwargs))
        if any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in leaves[1:]):
            raise CaptureError(
                f"{func} with a boolean mask in a captured region: its shape depends on the mask's values (a host "
                "synchronisation), so a CUDA graph cannot capture it"
            )


def _storages(tree) -> set[int]:
    leaves, _ = tree_flatten(tree)
    return {t.untyped_storage().data_ptr() for t in leaves if isinstance(t, torch.Tensor)}


def _fresh_outputs(func, args, kwargs, out) -> list[bool] | None:
    """Which output tensors a replay must refresh (``copy_`` into), or None when the op is left out of the replay.

    An output that aliases an input is not refreshed (a view keeps aliasing its recorded base; an in-place op's
    result is its input). Aliasing is read from the storages, not the schema: ``to``, ``reshape`` and
    ``contiguous`` are declared as views but copy when the dtype or the layout changes, and an op that writes into
    an argument may also return a new tensor. An op is left out when it only allocates, or when it mutates nothing
    and every output aliases an input."""
    if op_name(func) in _ALLOCATIONS:
        return None
    inputs = _storages((args, kwargs))
    leaves, _ = tree_flatten(out)
    fresh = [isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs for t in leaves]
    if not func._schema.is_mutable and not any(fresh):
        return None
    return fresh


class _Recorder(TorchDispatchMode):
    def __init__(self, ops: list):
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        _check_capturable(func, args, kwargs)
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out, _fresh_outputs(func, args, kwargs, out)))
        return out


class TapeGraph:
    """One captured region (the graph interface of :mod:`stagevar.engine.graphs`): :meth:`warm_up`,
    :meth:`capture`, :meth:`replay`. ``ops`` lists the recorded ``(func, args, kwargs, outputs, refresh)``, ``refresh``
    marking the outputs a replay copies into (None: the op is not replayed)."""

    def __init__(self):
        self.ops: list = []
        self.captured = False

    def warm_up(self, fn) -> None:
        """Run ``fn`` eagerly once (a CUDA graph warms up on a side stream; on a CPU there is nothing to warm)."""
        fn()

    def capture(self, fn):
        """Record ``fn()`` (running it) and return its output; raises :class:`CaptureError` on host sync."""
        if self.captured:
            raise RuntimeError("TapeGraph: already captured")
        with _Recorder(self.ops):
            out = fn()
        self.captured = True
        return out

    def replay(self) -> None:
        """Re-execute every recorded op on its recorded tensors and ``copy_`` each new output into the recorded one
        (in-place writes land in their recorded arguments; views are left as they are: they alias their base)."""
        if not self.captured:
            raise RuntimeError("TapeGraph: replay before capture")
        with torch.inference_mode():
            for func, args, kwargs, out, fresh_mask in self.ops:
                if fresh_mask is None:
                    continue
                result = func(*args, **kwargs)
                for recorded, fresh, refresh in zip(tree_flatten(out)[0], tree_flatten(result)[0], fresh_mask):
                    if refresh:
                        recorded.copy_(fresh)


class TapeFactory:
    """The graph factory of :mod:`stagevar.engine.graphs` that hands out :class:`TapeGraph` objects (any device).
    ``graphs`` lists every graph it made (tests count captures with it)."""

    def __init__(self):
        self.graphs: list[TapeGraph] = []

    def supports(self, device: torch.device) -> bool:
        return True

    def pool(self):
        return None  # a tape keeps every tensor it recorded alive: no allocator pool to share

    def graph(self, pool) -> TapeGraph:
        g = TapeGraph()
        self.graphs.append(g)
        return g
