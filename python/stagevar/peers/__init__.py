"""Peer methods, run on the same models and harness as StageVAR for side-by-side benchmarks.

- :mod:`.fastvar`: FastVAR as released for Infinity (per-sublayer pivotal-token pruning, cached restoration,
  skipped last steps).

SkipVAR's fixed modes need no code of their own: they are schedules (see the README).
"""

PEERS = ("fastvar",)
