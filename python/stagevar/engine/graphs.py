"""CUDA graphs of the computed scale steps: captured at the first generation of a key, replayed in later ones.

What is captured. A generation method hands the engine a :class:`StepProgram`: for ``stagevar.generate`` the region
of step ``k`` is :func:`stagevar.loop.run_units` (every unit: full blocks, or RP -> blocks -> RTR with both
StageVAR ops in a reduced step); for the FastVAR peer, its pruned blocks. ``scale_input`` stays outside (it reads the
accumulated codes, which ``finish_scale`` replaces every step); the engine copies its result into the graph's
static input. The head, sampling and code accumulation stay outside too: they hold the generation's random
generators, so sampling draws exactly the numbers of an eager run (its generator streams are bit-identical to
eager). The ops' seeds reach the kernels through a device table ``(steps, units)`` that each generation rewrites
before replaying, so a new seed needs no new capture.

The workspace. The first generation of a key runs on its own session and captures step by step: an eager warm-up
of the region (Triton compiles, cuBLAS handles; its KV writes and carried state undone), the capture, one replay
whose output feeds ``finish_scale``. Later generations build their own session (prompts, generators, codes) as
usual, copy its prompt-dependent set-up tensors (``session.graph_inputs()``, see
:class:`stagevar.models.session.Graphable`) into the workspace's with one ``copy_`` each, and replay. So **a graphed
model keeps its workspace between generations**: the KV cache of every block, the text K/V, the per-block
constants, the state carried between steps and the static inputs and outputs stay allocated at fixed addresses,
even after ``decode`` released the session's own references (that is the price of replay). They are kept per
model in a ``weakref.WeakKeyDictionary`` (they die with the model); :func:`clear` drops them sooner, and must be
called after the model's weights change in place (constants derived from them at capture are not refreshed).

The key: the model, the session's type, scales, batch, set-up guidance, ``session.graph_signature()`` (amp dtype
and whatever else the session bakes in), the shapes, strides and dtypes of ``graph_inputs()`` (Infinity's text K/V
length follows the prompts' token count: prompts padded by the caller to a common length reuse graphs), and the
program's ``spec`` (the schedule's JSON without its seed, the units, the ops' backend). A change of any of them
captures anew.

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
from typing import Protocol

import torch

import stagevar_kernels

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


class StepProgram(Protocol):
    """What a generation method hands the graph engine: its computed steps as regions to capture.

    Attributes:
        steps: number of computed steps (scale steps ``0..steps-1``).
        spec: hashable description of everything the regions bake in besides the session (the schedule, the
            backend...): part of the key.
        seed_shape: shape of the int64 device table of op seeds the regions read (None: no table).
    """

    steps: int
    spec: tuple
    seed_shape: tuple[int, ...] | None

    def seed_values(self) -> list:
        """This generation's seeds, nested lists of ``seed_shape`` (63-bit ints)."""
        ...

    def new_state(self) -> object:
        """The state carried between steps (e.g. unit outputs), fresh; the workspace keeps it."""
        ...

    def save(self, state) -> object:
        """A snapshot of ``state`` (references, not copies) that :meth:`restore` puts back after the warm-up."""
        ...

    def restore(self, state, saved) -> None: ...

    def prepare(self, session, k: int, state) -> None:
        """Before step ``k``'s input (e.g. the guidance switch); ``state`` is None on a replaying generation (the
        workspace's state was switched when it was captured)."""
        ...

    def region(self, session, k: int, x: torch.Tensor, state, seeds: torch.Tensor | None) -> torch.Tensor:
        """The computed part of step ``k`` on its input ``x`` ``(R, h*w, C)``: the captured work."""
        ...


def _tensor_layout(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), tuple(t.stride()), t.dtype)


def graph_key(session, program: StepProgram, inputs: list[torch.Tensor]) -> tuple:
    """Everything baked into a generation's captured steps (see the module docstring)."""
    return (
        type(session),
        tuple(map(tuple, session.scales)),
        int(session.batch),
        session.guidance,
        session.graph_signature(),
        tuple(_tensor_layout(t) for t in inputs),
        program.steps,
        program.spec,
    )


def schedule_spec(schedule) -> str:
    """A schedule's JSON without its seed (the seeds live in a device table, so they are no part of a key)."""
    spec = schedule.to_dict()
    spec.pop("seed", None)
    return json.dumps(spec, sort_keys=True)


def resolved_backend(backend: str | None, session) -> str:
    """The ops' backend a generation on ``session`` runs (``None``: the device's default)."""
    return stagevar_kernels.backends.resolve_backend(backend, torch.device(session.device))


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
    (the KV buffers, which the session's ``release_state`` would drop), ``carried`` (the program's state carried
    between steps), ``seeds`` (the op-seed table) and ``steps``."""

    state: dict
    inputs: list[torch.Tensor]
    seeds: torch.Tensor | None
    carried: object
    steps: list[StepGraph] = dataclasses.field(default_factory=list)
    kv: list[torch.Tensor] = dataclasses.field(default_factory=list)
    pool: object = None


def _fill_seeds(table: torch.Tensor | None, program: StepProgram) -> None:
    if table is not None:
        table.copy_(torch.tensor(program.seed_values(), dtype=torch.int64))


def run_steps(session, program: StepProgram, timer: StepTimer) -> None:
    """Run the computed steps of one generation on ``session`` with graphs: capture them into a new workspace at
    the first generation of the key, replay them otherwise. ``finish_scale`` runs on ``session`` after each step.
    Call inside ``torch.inference_mode()``, after :func:`check_graphable`."""
    inputs = session.graph_inputs()
    key = graph_key(session, program, inputs)
    per_model = _CACHE.setdefault(session.model, {})
    workspace = per_model.get(key)
    if workspace is None:
        per_model[key] = _capture(session, program, timer, inputs)
        return
    for dst, src in zip(workspace.inputs, inputs):
        dst.copy_(src)
    _fill_seeds(workspace.seeds, program)
    for k, captured in enumerate(workspace.steps):
        timer.start(f"scale{k}")
        program.prepare(session, k, None)  # finish_scale reads the session's guidance
        captured.static_in.copy_(session.scale_input(k))
        captured.graph.replay()
        session.finish_scale(k, captured.static_out)
        timer.stop(f"scale{k}")


def _capture(session, program: StepProgram, timer: StepTimer, inputs) -> Workspace:
    factory = _factory()
    seeds = None
    if program.seed_shape is not None:
        seeds = torch.empty(program.seed_shape, dtype=torch.int64, device=session.device)
    _fill_seeds(seeds, program)
    state = program.new_state()
    workspace = Workspace({}, list(inputs), seeds, state, pool=factory.pool())
    for k in range(program.steps):
        timer.start(f"scale{k}")
        program.prepare(session, k, state)
        x = session.scale_input(k)
        timer.start("capture")
        static_in = x.clone()
        run = functools.partial(program.region, session, k, static_in, state, seeds)
        graph = factory.graph(workspace.pool)
        mark, saved = session.kv.mark(), program.save(state)
        graph.warm_up(run)
        session.kv.rewind(mark)  # the capture writes the same key positions again
        program.restore(state, saved)
        static_out = graph.capture(run)
        timer.stop("capture")
        graph.replay()
        workspace.steps.append(StepGraph(graph, static_in, static_out))
        session.finish_scale(k, static_out)
        timer.stop(f"scale{k}")
    workspace.kv = [t for t in (session.kv.k, session.kv.v) if t is not None]
    workspace.state = {name: value for name, value in vars(session).items() if value is not session.model}
    return workspace
