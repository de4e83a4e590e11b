"""Peer methods, run on the same models and harness as StageVAR for side-by-side benchmarks: one registry.

- :mod:`.fastvar`: FastVAR as released for Infinity (per-sublayer pivotal-token pruning, cached restoration,
  skipped last steps);
- :mod:`.skipvar`: SkipVAR's fixed modes (skip the last steps, or drop the unconditional branch), as schedules.

:data:`PEERS` maps a peer's name (``fastvar``, ``skipvar-skip1`` ...) to a :class:`Peer`: the families it supports
and a factory of its runner for a family. A runner is called as ``runner(session, *, backend, timer, cuda_graphs)``
on a fresh generation session and returns the decoded images; :func:`schedule_runner` is the runner of a StageVAR
schedule, so the harness (``stagevar bench``, ``stagevar eval``) treats schedules and peers alike.

Adding a peer:

1. Write ``peers/<peer>.py``: ``generate(session, *, backend=None, timer=None, decode=True)`` over a
   ``GenerationSession`` (or, if the peer is a schedule of this package, a function returning the schedule), with
   the timer labels of :func:`stagevar.generate` (``scale{k}``, ``decode``, ``ops``).
2. Write its runner factory here (``family -> runner``) and add one ``Peer(...)`` per name to :data:`PEERS`, with
   the families it runs on (FastVAR: Infinity only).
3. Test it in ``tests/stagevar/test_peers.py``: its structure on a tiny model, and one ``stagevar bench`` run with it.
4. Nothing else changes: the harness, its ``--schedules`` help and its family check read the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..families import FAMILIES, Family, family
from ..loop import generate
from ..schedule import StageSchedule
from . import fastvar, skipvar

Runner = Callable[..., object]  # runner(session, *, backend, timer, cuda_graphs) -> images (B, 3, H, W) or None


def schedule_runner(schedule: StageSchedule) -> Runner:
    """The runner of a StageVAR schedule: :func:`stagevar.generate` under ``schedule``."""

    def run(session, *, backend=None, timer=None, cuda_graphs=False):
        return generate(session, schedule, backend=backend, timer=timer, cuda_graphs=cuda_graphs)

    return run


def _fastvar_runner(entry: Family) -> Runner:
    def run(session, *, backend=None, timer=None, cuda_graphs=False):
        return fastvar.generate(session, backend=backend, timer=timer, cuda_graphs=cuda_graphs)

    return run


def _skipvar_runner(name: str) -> Callable[[Family], Runner]:
    # SkipVAR's modes act on whole steps, so they run on every family, with the family's unit of projection
    return lambda entry: schedule_runner(skipvar.mode(name, entry.default_unit))


@dataclass(frozen=True)
class Peer:
    """A peer method: ``name``, its ``title`` in messages, the ``families`` it runs on and ``make(family)``, the
    factory of its runner for a :class:`~stagevar.families.Family`."""

    name: str
    title: str
    families: tuple[str, ...]
    make: Callable[[Family], Runner]


PEERS: dict[str, Peer] = {
    "fastvar": Peer("fastvar", "FastVAR", ("infinity",), _fastvar_runner),
    **{name: Peer(name, "SkipVAR", tuple(FAMILIES), _skipvar_runner(name)) for name in skipvar.MODES},
}


def runner(name: str, family_name: str) -> Runner:
    """The runner of peer ``name`` on models of family ``family_name``.

    ``ValueError`` naming ``name`` for an unknown peer (listing the known ones), and naming ``schedules`` for a
    peer that does not run on the family.
    """
    if name not in PEERS:
        raise ValueError(f"name: expected a peer among {list(PEERS)}, got {name!r}")
    peer, entry = PEERS[name], family(family_name)
    if entry.name not in peer.families:
        supported = " and ".join(FAMILIES[f].title for f in peer.families)
        raise ValueError(f"schedules: the {peer.title} peer is a method for {supported} only, not {entry.title}")
    return peer.make(entry)


__all__ = ["PEERS", "Peer", "Runner", "runner", "schedule_runner"]
