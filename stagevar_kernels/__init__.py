"""stagevar_kernels: the two fused ops of StageVAR as PyTorch custom ops.

- :func:`project_and_sample`: Gaussian random projection of a unit's input tokens plus norm-weighted
  sampling of the positions the projected rows stand for.
- :func:`restore_merge`: the full-size output rebuilt from the computed rows and the upsampled output of the
  previous scale.

Both are registered as ``torch.ops.stagevar.*`` with a pure-torch reference (the CPU kernel), Triton kernels and,
when the extension was built with CUDA, CUDA C++ kernels. The package imports without Triton and without the
compiled extension.
"""

from . import block as block  # registers the fused block ops (torch.ops.stagevar.*)
from .backends import BACKENDS, HAS_EXT, available_backends, default_backend
from .ops import project_and_sample, restore_merge
from .reference import RESTORE_MODES

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "HAS_EXT",
    "RESTORE_MODES",
    "available_backends",
    "default_backend",
    "project_and_sample",
    "restore_merge",
]
