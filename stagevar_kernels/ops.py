"""Registration of the two public ops as ``torch.ops.stagevar.*`` and their typed Python entry points.

One op per kernel (``project_and_sample``, ``restore_merge``); the backend is an argument and is chosen inside
the implementation, so ``torch.compile`` sees one opaque node whatever runs underneath. The same Python
implementation is registered for CPU and CUDA: it validates the cheap things, resolves the backend and calls the
reference, the Triton launcher or the C++ op of the extension. The fake kernels allocate exactly what the real
ones return (fresh contiguous tensors). The ops are inference-only: the autograd formula raises.
"""

from __future__ import annotations

import torch

from . import reference, validation
from .backends import HAS_EXT, resolve_backend

_lib = torch.library.Library("stagevar", "FRAGMENT")  # kept at module level: the registrations live with it
# ``seed_tensor``: a one-element int64 device tensor read by the kernels (no host sync), so a captured CUDA graph
# draws new numbers when the caller rewrites it in place; when given, ``seed`` is ignored.
_lib.define(
    "project_and_sample(Tensor x, int rank, int seed, str? backend=None, Tensor? seed_tensor=None) -> (Tensor, Tensor)"
)
_lib.define(
    "restore_merge(Tensor y, Tensor idx, Tensor cache, int[] src_hw, int[] dst_hw, str mode='area', "
    "str? backend=None) -> Tensor"
)


def _cuda_launcher_takes_seed_tensor() -> bool:
    """The extension's launcher schema is ``(x, rank, seed, seed_tensor)``; an older build lacks the 4th."""
    return len(torch.ops.stagevar._project_and_sample_cuda.default._schema.arguments) == 4


def _project_and_sample_impl(x, rank, seed, backend=None, seed_tensor=None):
    validation.check_project_and_sample(x, rank, seed, seed_tensor)
    name = resolve_backend(backend, x.device)
    if x.shape[0] == 0:
        return x.new_empty(0, rank, x.shape[2]), x.new_empty(0, rank, dtype=torch.int64)
    if name == "triton":
        from .triton.project_and_sample import project_and_sample as launch

        return launch(x, rank, seed if seed_tensor is None else seed_tensor)
    if name == "cuda":
        if not _cuda_launcher_takes_seed_tensor():
            raise RuntimeError(
                "stagevar_kernels._C is an older build whose _project_and_sample_cuda has no seed_tensor argument; "
                "rebuild the extension (python setup.py build_ext --inplace)"
            )
        return torch.ops.stagevar._project_and_sample_cuda(x, rank, seed, seed_tensor)
    return reference.project_and_sample(x, rank, seed if seed_tensor is None else seed_tensor)


def _restore_merge_impl(y, idx, cache, src_hw, dst_hw, mode="area", backend=None):
    src, dst = validation.check_restore_merge(y, idx, cache, src_hw, dst_hw, mode)
    name = resolve_backend(backend, y.device)
    if y.shape[0] == 0:
        return y.new_empty(0, dst[0] * dst[1], y.shape[2])
    if name == "triton":
        from .triton.restore_merge import restore_merge as launch

        return launch(y, idx, cache, src, dst, mode)
    if name == "cuda":
        return torch.ops.stagevar._restore_merge_cuda(y, idx, cache, list(src), list(dst), mode)
    return reference.restore_merge(y, idx, cache, src, dst, mode)


for _key in ("CPU", "CUDA"):
    _lib.impl("project_and_sample", _project_and_sample_impl, _key)
    _lib.impl("restore_merge", _restore_merge_impl, _key)


@torch.library.register_fake("stagevar::project_and_sample")
def _project_and_sample_fake(x, rank, seed, backend=None, seed_tensor=None):
    return x.new_empty(x.shape[0], rank, x.shape[2]), x.new_empty(x.shape[0], rank, dtype=torch.int64)


@torch.library.register_fake("stagevar::restore_merge")
def _restore_merge_fake(y, idx, cache, src_hw, dst_hw, mode="area", backend=None):
    return y.new_empty(y.shape[0], dst_hw[0] * dst_hw[1], y.shape[2])


def _inference_only(ctx, *grads):
    raise RuntimeError("stagevar ops are inference-only: they have no backward")


def _no_context(ctx, inputs, output):
    return None


torch.library.register_autograd("stagevar::project_and_sample", _inference_only, setup_context=_no_context)
torch.library.register_autograd("stagevar::restore_merge", _inference_only, setup_context=_no_context)

if HAS_EXT and hasattr(torch.ops.stagevar, "_project_and_sample_cuda"):
    # Schemas come from csrc/ops.cpp; these fakes let torch.compile trace calls made with backend="cuda".
    @torch.library.register_fake("stagevar::_project_and_sample_cuda")
    def _project_and_sample_cuda_fake(x, rank, seed, seed_tensor=None):  # default: also fits an older 3-arg build
        return _project_and_sample_fake(x, rank, seed)

    @torch.library.register_fake("stagevar::_restore_merge_cuda")
    def _restore_merge_cuda_fake(y, idx, cache, src_hw, dst_hw, mode):
        return _restore_merge_fake(y, idx, cache, src_hw, dst_hw, mode)


def project_and_sample(
    x: torch.Tensor, rank: int, seed: int | torch.Tensor, *, backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian random projection of the rows of ``x`` fused with norm-weighted row sampling.

    ``xr[b] = Q_b^T x[b]`` with ``Q_b`` an ``M x rank`` matrix of N(0, 1/rank) entries, and ``idx[b]`` the
    ``rank`` distinct rows drawn without replacement with probability proportional to ``||x[b, i]||^2``
    (Gumbel-top-k; rows of zero or non-finite norm last, lowest index first), sorted ascending. Row ``j`` of
    ``xr`` represents position ``idx[b, j]``. The random stream (``stagevar_kernels.philox``) is the contract:
    Philox4x32-10 keyed by ``(seed & 0xFFFFFFFF, seed >> 32)``; ``Q_b[i, j]`` comes from the counter
    ``(i, j // 4, b, 0)`` (word ``j % 4`` through Box-Muller pairs), the Gumbel draw of row ``i`` from word 0 of
    ``(i, 0, b, 1)``.

    What agrees between backends:

    - bit for bit: the Philox words, hence ``idx`` (every backend selects with the same total order: key
      descending, then index ascending). The one exception: squared norms are summed in a backend-specific order
      and ``log`` differs by an ulp between libraries, so two rows whose keys tie to within float32 rounding can
      swap at the selection boundary (about once in 10^4 batch items at M = 1600).
    - to an ulp or two of float32: the entries of ``Q`` (``log``/``sin``/``cos`` implementations differ).
    - ``xr`` to the bound of ``testing.PROJECTION_TOLERANCE``: ``|xr - xr_ref| <= k * (|Q|^T |x|) + 2 u |xr_ref|``
      with ``k = 2**-8 + 2**-12`` (bf16; the GPU backends round ``Q`` to bf16 for the tensor cores), ``2**-11 +
      2**-12`` (fp16) and ``2**-20`` (float32: 3xTF32 split, float32 accuracy), ``u`` the output's unit roundoff.
      Non-finite inputs: ``inf``/``NaN`` entries of ``xr`` exactly where the reference (IEEE float32 arithmetic)
      has them; such rows count as non-finite for the sampling.

    Args:
        x: ``(B, M, D)`` float32, float16 or bfloat16, any strides.
        rank: ``r`` with ``1 <= r <= M``.
        seed: int in ``[0, 2**63)``, or an int64 tensor with exactly one element (shape ``()`` or ``(1,)``) on
            ``x.device``. A tensor seed is read by the kernels on the device (its value is not checked: that would
            synchronise), so one captured CUDA graph serves every generation when the caller updates the tensor in
            place (``seed_t.fill_(s)`` or ``copy_``). Both forms give the same result for the same value.
        backend: ``"reference"``, ``"triton"``, ``"cuda"`` or ``None`` (see ``backends.default_backend``).
    Returns:
        ``xr``: ``(B, r, D)`` contiguous, ``x.dtype`` (accumulated in float32);
        ``idx``: ``(B, r)`` int64, sorted ascending.
    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, ranges, an unavailable backend, or an input
        that requires grad (the op is inference-only).
    """
    validation.check_project_and_sample(x, rank, seed)
    validation.check_no_grad("x", x)
    if isinstance(seed, torch.Tensor):
        return torch.ops.stagevar.project_and_sample.default(x, rank, 0, backend, seed)
    return torch.ops.stagevar.project_and_sample.default(x, rank, seed, backend)


def restore_merge(
    y: torch.Tensor,
    idx: torch.Tensor,
    cache: torch.Tensor,
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
    mode: str = "area",
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Representative-token restoration fused with the upsampling of the previous scale's output.

    ``out[b, idx[b, j]] = y[b, j]``; every other row ``p`` is ``Up(cache[b])[p]`` where ``Up`` is exactly
    ``torch.nn.functional.interpolate`` of the ``(h0, w0)`` token grid (raster order) to ``(h, w)`` with
    ``mode`` and ``align_corners=False``, per channel. ``idx`` may come in any order (no backend relies on the
    sorted order ``project_and_sample`` returns); out-of-range indices are ignored (never written); among duplicate
    indices the largest ``j`` wins (``reference.source_rows``), in every backend. Selected rows are copied exactly;
    interpolated rows are computed in float32 and rounded once to ``y.dtype`` (within ``testing.tolerance``).

    Args:
        y: ``(B, r, D)`` float32, float16 or bfloat16: the rows computed at this scale.
        idx: ``(B, r)`` int64: their positions in the ``h*w`` grid, any order.
        cache: ``(B, h0*w0, D)`` same dtype as ``y``: the unit's output at the previous scale.
        src_hw: ``(h0, w0)``; dst_hw: ``(h, w)`` with ``h*w >= r``.
        mode: ``"nearest"``, ``"bilinear"``, ``"bicubic"`` or ``"area"``.
        backend: ``"reference"``, ``"triton"``, ``"cuda"`` or ``None``.
    Returns:
        ``(B, h*w, D)`` contiguous, ``y.dtype``.
    Raises:
        ValueError: naming the argument, for inconsistent shapes, dtypes, devices, sizes, an unknown mode or an
        unavailable backend, or inputs that require grad.
    """
    validation.check_restore_merge(y, idx, cache, src_hw, dst_hw, mode)
    validation.check_no_grad("y", y)
    validation.check_no_grad("cache", cache)
    return torch.ops.stagevar.restore_merge.default(y, idx, cache, list(src_hw), list(dst_hw), mode, backend)
