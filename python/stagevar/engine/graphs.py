"""CUDA graphs of the computed scale steps: captured at the first generation of a key, replayed in later ones.

What is captured. For every computed step ``k`` the region :func:`stagevar.loop.run_units` (every unit: full
blocks, or RP -> blocks -> RTR with both StageVAR ops in a reduced step). ``scale_input`` stays outside (it reads the
accumulated codes, which ``finish_scale`` replaces every step); the loop copies its result into the graph's static
input. The head, sampling and code accumulation stay outside too: they hold the generation's random generators, so
sampling draws exactly the numbers of an eager run (its generator streams are bit-identical to eager). The ops'
seeds reach the kernels through a device table ``(steps, units)`` that each generation rewrites before replaying,
so a new seed needs no new capture.

The workspace. The first generation of a key runs on its own session and captures step by step: an eager warm-up
of the region (Triton compiles, cuBLAS handles; its KV writes and unit outputs undone), the capture, one replay
whose output feeds ``finish_scale``. Later generations build their own session (prompts, generators, codes) as
usual, copy its prompt-dependent set-up tensors (``session.graph_inputs()``) into the workspace's with one
``copy_`` each, and replay. So **a graphed model keeps its workspace between generations**: the KV cache of every
block, the text K/V, the per-block constants, the unit outputs carried between steps and the static inputs and
outputs stay allocated at fixed addresses (that is the price of replay). They are kept per model in a
``weakref.WeakKeyDictionary`` (they die with the model); :func:`clear` drops them sooner.

The key: the model, the session's type, scales, batch, set-up guidance, ``session.graph_signature()`` (amp dtype
and whatever else the session bakes in), the shapes, strides and dtypes of ``graph_inputs()`` (Infinity's text K/V
length follows the prompts' token count: prompts padded by the caller to a common length reuse graphs), the
schedule (its JSON without the seed), the units and the ops' backend. A change of any of them captures anew.

The graph interface, so that the engine runs on a CPU in tests: a factory hands out graph objects with
``warm_up(fn)``, ``capture(fn) -> output`` and ``replay()``; production uses :class:`CUDAGraphFactory`, tests
:class:`stagevar.engine.tape.TapeFactory` (through :func:`use_factory`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import weakref
from collections.abc import Callable, Iterator

import torch

import stagevar_kernels

from ..models.session import rows_for
from ..timing import StepTimer

# model -> {key: Workspace}; a workspace holds no reference to its model, so the entry dies with the model.
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FACTORY: list = []  # a factory installed by use_factory (tests), innermost last


class CUDAStepGraph:
    """One ``torch.cuda.CUDAGraph`` in a shared memory pool; warm-up on a side stream, as capture requires."""

    def __init__(self, pool, side: torch.cuda.Stream):
        self.graph = torch.cuda.CUDAGraph()
        self.pool, self.side = pool, side

    def warm_up(self, fn: Callable[[], object]) -> None:
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            fn()
        torch.cuda.current_stream().wait_stream(self.side)

    def capture(self, fn: Callable[[], object]):
        with torch.cuda.graph(self.graph, pool=self.pool):
            out = fn()
        return out

    def replay(self) -> None:
        self.graph.replay()


class CUDAGraphFactory:
    """Hands out :class:`CUDAStepGraph` objects (CUDA devices only)."""

    def __init__(self):
        self._side: torch.cuda.Stream | None = None

    def supports(self, device: torch.device) -> bool:
        return device.type == "cuda"

    def pool(self):
        return torch.cuda.graph_pool_handle()

    def graph(self, pool) -> CUDAStepGraph:
        if self._side is None:
            self._side = torch.cuda.Stream()
        return CUDAStepGraph(pool, self._side)


_CUDA = CUDAGraphFactory()


def _factory():
    return _FACTORY[-1] if _FACTORY else _CUDA


@contextlib.contextmanager
def use_factory(factory) -> Iterator[None]:
    """Use ``factory`` instead of CUDA graphs inside the block (tests: :class:`~stagevar.engine.tape.TapeFactory`
    runs the graphed engine on a CPU). Private to tests: the public ``cuda_graphs=True`` needs a CUDA session."""
    _FACTORY.append(factory)
    try:
        yield
    finally:
        _FACTORY.remove(factory)


def clear(model=None) -> None:
    """Drop the captured graphs and workspaces of ``model`` (None: of every model)."""
    if model is None:
        _CACHE.clear()
    else:
        _CACHE.pop(model, None)


def captured_keys(model) -> list[tuple]:
    """The keys ``model`` holds captured steps for (oldest first)."""
    return list(_CACHE.get(model, {}))


def check_graphable(session, observer=None) -> None:
    """``ValueError`` naming ``cuda_graphs`` unless ``session`` can run graphed steps with the current factory."""
    device = torch.device(getattr(session, "device", "cpu"))
    if not _factory().supports(device):
        raise ValueError(f"cuda_graphs: CUDA graphs need a CUDA device; this session runs on {device.type}")
    if observer is not None:
        raise ValueError("cuda_graphs: an observer sees eager steps (calibration); pass cuda_graphs=False with it")
    missing = [a for a in ("graph_inputs", "graph_signature", "kv", "model") if not hasattr(session, a)]
    if missing:
        raise ValueError(f"cuda_graphs: {type(session).__name__} sessions cannot be graphed (no {missing[0]})")
    session.graph_signature()  # raises ValueError naming cuda_graphs for a session whose steps cannot be captured
    if torch.is_autocast_enabled(device.type):
        raise ValueError(
            "cuda_graphs: called inside an autocast context; the session applies its own amp_dtype (an outer "
            "context's cast cache would outlive the capture)"
        )


def _tensor_layout(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), tuple(t.stride()), t.dtype)


def graph_key(session, schedule, units, backend: str, inputs: list[torch.Tensor]) -> tuple:
    """Everything baked into a generation's captured steps (see the module docstring)."""
    spec = schedule.to_dict()
    spec.pop("seed", None)  # the seeds live in a device table
    return (
        type(session),
        tuple(map(tuple, session.scales)),
        int(session.batch),
        session.guidance,
        session.graph_signature(),
        tuple(_tensor_layout(t) for t in inputs),
        json.dumps(spec, sort_keys=True),
        tuple(len(u) for u in units),
        backend,
    )


@dataclasses.dataclass
class StepGraph:
    """The captured region of one step: its graph, static input ``(R, h*w, C)`` and output ``(R, h*w, C)``."""

    graph: object
    static_in: torch.Tensor
    static_out: torch.Tensor


@dataclasses.dataclass
class Workspace:
    """The captured steps of one key and every tensor they read or write: ``state`` (the capturing session's
    attributes but its model: KV cache, rope tables, constants...), ``inputs`` (its ``graph_inputs()``), ``kv``
    (the KV buffers, which the session's ``release_state`` would drop), ``outputs`` (unit outputs carried between
    steps), ``seeds`` (the op-seed table) and ``steps``."""

    state: dict
    inputs: list[torch.Tensor]
    seeds: torch.Tensor
    outputs: object
    steps: list[StepGraph] = dataclasses.field(default_factory=list)
    kv: list[torch.Tensor] = dataclasses.field(default_factory=list)
    pool: object = None


def _fill_seeds(table: torch.Tensor, seed: int) -> None:
    from ..fidelity import unit_seed

    steps, units = table.shape
    values = [[unit_seed(seed, k, u) for u in range(units)] for k in range(steps)]
    table.copy_(torch.tensor(values, dtype=torch.int64))


def _switch_guidance(session, step, outputs=None) -> None:
    if session.guidance == "cfg" and step.guidance != "cfg":
        if outputs is not None:
            outputs.keep_rows(rows_for(session.guidance, step.guidance, session.batch))
        session.set_guidance(step.guidance)


def run_steps(session, schedule, units, plan, options, timer: StepTimer, region, outputs) -> None:
    """Run the computed steps ``plan`` of one generation on ``session`` with graphs: capture them into a new
    workspace at the first generation of the key, replay them otherwise. ``region`` is
    :func:`stagevar.loop.run_units`, ``outputs`` a fresh ``UnitOutputs`` (used when capturing)."""
    device = torch.device(session.device)
    backend = stagevar_kernels.backends.resolve_backend(options.backend, device)
    inputs = session.graph_inputs()
    key = graph_key(session, schedule, units, backend, inputs)
    per_model = _CACHE.setdefault(session.model, {})
    workspace = per_model.get(key)
    if workspace is None:
        per_model[key] = _capture(session, units, plan, options, timer, region, outputs, inputs)
        return
    for dst, src in zip(workspace.inputs, inputs):
        dst.copy_(src)
    _fill_seeds(workspace.seeds, options.seed)
    for k, (step, captured) in enumerate(zip(plan, workspace.steps)):
        timer.start(f"scale{k}")
        _switch_guidance(session, step)  # finish_scale reads the guidance; the workspace's rows switched at capture
        captured.static_in.copy_(session.scale_input(k))
        captured.graph.replay()
        session.finish_scale(k, captured.static_out)
        timer.stop(f"scale{k}")


def _capture(session, units, plan, options, timer, region, outputs, inputs) -> Workspace:
    factory = _factory()
    seeds = torch.empty((len(plan), len(units)), dtype=torch.int64, device=session.device)
    _fill_seeds(seeds, options.seed)
    # no timer inside the region: its Python does not run on replay (and events cannot be recorded in a capture)
    graphed = dataclasses.replace(options, timer=StepTimer(), seeds_table=seeds)
    workspace = Workspace({}, list(inputs), seeds, outputs, pool=factory.pool())
    for k, step in enumerate(plan):
        timer.start(f"scale{k}")
        _switch_guidance(session, step, outputs)
        keep_outputs = k + 1 < len(plan) and plan[k + 1].mode == "reduced"
        x = session.scale_input(k)
        timer.start("capture")
        static_in = x.clone()
        run = functools.partial(region, session, units, k, step, static_in, outputs, graphed, keep_outputs)
        graph = factory.graph(workspace.pool)
        mark, saved = session.kv.mark(), (list(outputs.tensors), outputs.hw)
        graph.warm_up(run)
        session.kv.rewind(mark)  # the capture writes the same key positions again
        outputs.tensors, outputs.hw = saved
        static_out = graph.capture(run)
        timer.stop("capture")
        graph.replay()
        workspace.steps.append(StepGraph(graph, static_in, static_out))
        session.finish_scale(k, static_out)
        timer.stop(f"scale{k}")
    workspace.kv = [t for t in (session.kv.k, session.kv.v) if t is not None]
    workspace.state = {name: value for name, value in vars(session).items() if value is not session.model}
    return workspace
