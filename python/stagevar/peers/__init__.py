"""Peer methods, run on the same models and harness as StageVAR for side-by-side benchmarks.

- :mod:`.fastvar`: FastVAR as released for Infinity (per-sublayer pivotal-token pruning, cached restoration,
  skipped last steps);
- :mod:`.skipvar`: SkipVAR's fixed modes (skip the last steps, or drop the unconditional branch), as schedules.
"""

from .skipvar import MODES as SKIPVAR_MODES

PEERS = ("fastvar", *SKIPVAR_MODES)
