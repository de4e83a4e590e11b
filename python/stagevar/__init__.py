"""stagevar: StageVAR (stage-aware acceleration of visual autoregressive models) on Infinity and STAR.

- :class:`StageSchedule` and :func:`presets`: what happens in the fidelity-refinement steps.
- :func:`generate`: the generation loop (Algorithm 1) over a model's generation session.
- :func:`accelerate` / :func:`restore` / :func:`accelerated`: run existing Infinity/STAR model objects (ours or
  the official classes) under a schedule through their usual ``autoregressive_infer_cfg`` entry point.
- :func:`calibrate`: per-unit rank ratios from vanilla generations (the paper's predetermination strategy).
"""

from .calibration import calibrate
from .loop import generate
from .patching import accelerate, accelerated, restore
from .schedule import StageSchedule, StepPlan, presets, resolve

__version__ = "0.1.0"

__all__ = [
    "StageSchedule",
    "StepPlan",
    "accelerate",
    "accelerated",
    "calibrate",
    "generate",
    "presets",
    "resolve",
    "restore",
]
