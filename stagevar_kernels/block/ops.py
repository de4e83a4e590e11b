"""Registration of the fused block ops as ``torch.ops.stagevar.*`` and their typed Python entry points.

One op per kernel; the backend is an argument resolved inside the implementation, so ``torch.compile`` sees one
opaque node and a dispatch-mode counter sees one launch whatever runs underneath. The same Python implementation is
registered for CPU and CUDA: it validates the cheap things, resolves the backend and calls the reference or the
Triton launcher. Fakes allocate exactly what the kernels return (fresh contiguous tensors). The ops are
inference-only: the functional ones get an autograd formula that raises; ``qk_norm_rope`` writes into ``k_out`` and
``v_out``, and torch accepts no autograd formula for a mutating op, so it gets an Autograd-key kernel that refuses
inputs requiring grad and otherwise runs the op below autograd.
"""

from __future__ import annotations

import torch

from ..backends import available_backends
from . import reference, validation

BLOCK_BACKENDS = ("reference", "triton")

_lib = torch.library.Library("stagevar", "FRAGMENT")  # kept at module level: the registrations live with it
_lib.define(
    "norm_modulate(Tensor x, Tensor? weight=None, Tensor? bias=None, Tensor? scale=None, Tensor? shift=None, *, "
    "float eps, ScalarType? out_dtype=None, str? backend=None) -> Tensor"
)
_lib.define(
    "qk_norm_rope(Tensor qkv, Tensor scale_mul, Tensor? cos, Tensor? sin, Tensor(a!) k_out, Tensor(b!) v_out, *, "
    "bool rope_first, float eps=1e-12, str? backend=None) -> Tensor"
)
_lib.define(
    "residual_gate(Tensor x, Tensor y, Tensor? gate=None, *, float scale=1.0, bool round_to_y=False, "
    "str? backend=None) -> Tensor"
)
_lib.define("bit_pair_probs(Tensor logits, *, int top_k, float top_p, str? backend=None) -> Tensor")


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """``None``: Triton on CUDA devices where it is installed, else the reference; a named backend must be available
    on ``device`` (CPU tensors run Triton only under ``TRITON_INTERPRET=1``)."""
    available = [name for name in available_backends(device) if name in BLOCK_BACKENDS]
    if backend is None:
        return "triton" if device.type == "cuda" and "triton" in available else "reference"
    if backend not in BLOCK_BACKENDS:
        raise ValueError(f"backend: expected one of {BLOCK_BACKENDS} or None, got {backend!r}")
    if backend not in available:
        raise ValueError(f"backend: {backend!r} is not available on {device} (available: {available})")
    return backend


# ----------------------------------------------------------------------------------------------- implementations


def _norm_modulate_impl(x, weight=None, bias=None, scale=None, shift=None, *, eps, out_dtype=None, backend=None):
    validation.check_norm_modulate(x, weight, bias, scale, shift, eps, out_dtype)
    if resolve_backend(backend, x.device) == "triton" and x.numel() > 0:
        from .triton.norm_modulate import norm_modulate as launch

        return launch(x, weight, bias, scale, shift, eps, out_dtype)
    return reference.norm_modulate(x, weight, bias, scale, shift, eps, out_dtype)


def _qk_norm_rope_impl(qkv, scale_mul, cos, sin, k_out, v_out, *, rope_first, eps=1e-12, backend=None):
    validation.check_qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first, eps)
    if resolve_backend(backend, qkv.device) == "triton" and qkv.numel() > 0:
        from .triton.qk_norm_rope import qk_norm_rope as launch

        return launch(qkv, scale_mul, cos, sin, k_out, v_out, rope_first, eps)
    return reference.qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first, eps)


def _residual_gate_impl(x, y, gate=None, *, scale=1.0, round_to_y=False, backend=None):
    validation.check_residual_gate(x, y, gate, scale, round_to_y)
    if resolve_backend(backend, x.device) == "triton" and x.numel() > 0:
        from .triton.residual_gate import residual_gate as launch

        return launch(x, y, gate, scale, round_to_y)
    return reference.residual_gate(x, y, gate, scale, round_to_y)


def _bit_pair_probs_impl(logits, *, top_k, top_p, backend=None):
    validation.check_bit_pair_probs(logits, top_k, top_p)
    if resolve_backend(backend, logits.device) == "triton" and logits.numel() > 0:
        from .triton.bit_pair_probs import bit_pair_probs as launch

        return launch(logits, top_k, top_p)
    return reference.bit_pair_probs(logits, top_k, top_p)


for _key in ("CPU", "CUDA"):
    _lib.impl("norm_modulate", _norm_modulate_impl, _key)
    _lib.impl("qk_norm_rope", _qk_norm_rope_impl, _key)
    _lib.impl("residual_gate", _residual_gate_impl, _key)
    _lib.impl("bit_pair_probs", _bit_pair_probs_impl, _key)


# ----------------------------------------------------------------------------------------------- fakes


@torch.library.register_fake("stagevar::norm_modulate")
def _norm_modulate_fake(x, weight=None, bias=None, scale=None, shift=None, *, eps, out_dtype=None, backend=None):
    return x.new_empty(x.shape, dtype=out_dtype or torch.float32)


@torch.library.register_fake("stagevar::qk_norm_rope")
def _qk_norm_rope_fake(qkv, scale_mul, cos, sin, k_out, v_out, *, rope_first, eps=1e-12, backend=None):
    return qkv.new_empty(k_out.shape)


@torch.library.register_fake("stagevar::residual_gate")
def _residual_gate_fake(x, y, gate=None, *, scale=1.0, round_to_y=False, backend=None):
    return x.new_empty(x.shape, dtype=reference.residual_dtype(x, y, gate, round_to_y))


@torch.library.register_fake("stagevar::bit_pair_probs")
def _bit_pair_probs_fake(logits, *, top_k, top_p, backend=None):
    B, L, V2 = logits.shape
    return logits.new_empty(B * L * (V2 // 2), 2)


# ----------------------------------------------------------------------------------------------- autograd


def _inference_only(ctx, *grads):
    raise RuntimeError("stagevar block ops are inference-only: they have no backward")


def _no_context(ctx, inputs, output, keyword_only_inputs=None):
    return None


for _name in ("norm_modulate", "residual_gate", "bit_pair_probs"):
    torch.library.register_autograd(f"stagevar::{_name}", _inference_only, setup_context=_no_context)


def _qk_norm_rope_autograd(qkv, scale_mul, cos, sin, k_out, v_out, *, rope_first, eps=1e-12, backend=None):
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (qkv, scale_mul, cos, sin, k_out, v_out)
    ):
        raise RuntimeError("stagevar::qk_norm_rope is inference-only: no input may require grad")
    with torch._C._AutoDispatchBelowAutograd():
        return torch.ops.stagevar.qk_norm_rope.default(
            qkv, scale_mul, cos, sin, k_out, v_out, rope_first=rope_first, eps=eps, backend=backend
        )


_lib.impl("qk_norm_rope", _qk_norm_rope_autograd, "Autograd")


# ----------------------------------------------------------------------------------------------- public API


def norm_modulate(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    *,
    eps: float,
    out_dtype: torch.dtype | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """LayerNorm in float32, optional affine, optional AdaLN modulation, one cast: the norm before a linear.

    ``y = F.layer_norm(x.float(), (C,), weight, bias, eps)``; with ``scale``/``shift``
    ``y = y * (1 + scale) + shift``; returns ``y.to(out_dtype or float32)``. Sites: Infinity's AdaLN before the
    self-attention and the FFN and in the head, Infinity's ``ca_norm`` (affine), STAR's ``ln_wo_grad`` (plain).

    Args:
        x: ``(R, L, C)`` float32/float16/bfloat16, any strides.
        weight, bias: ``(C,)`` float32 or None.
        scale, shift: ``(R or 1, 1, C)`` float32 (any strides), both or neither.
        eps: LayerNorm epsilon (``>= 0``).
        out_dtype: dtype of the result (the next linear's weight dtype); None: float32.
        backend: ``"reference"``, ``"triton"`` or None (Triton on CUDA when installed, else the reference).
    Returns:
        ``(R, L, C)`` contiguous in ``out_dtype``. Statistics in float32: mean, then the biased variance,
        ``1 / sqrt(var + eps)``.
    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, devices, an unavailable backend or an input that
        requires grad.
    """
    validation.check_norm_modulate(x, weight, bias, scale, shift, eps, out_dtype)
    _check_no_grad(x=x, weight=weight, bias=bias, scale=scale, shift=shift)
    return torch.ops.stagevar.norm_modulate.default(
        x, weight, bias, scale, shift, eps=float(eps), out_dtype=out_dtype, backend=backend
    )


def qk_norm_rope(
    qkv: torch.Tensor,
    scale_mul: torch.Tensor,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
    k_out: torch.Tensor,
    v_out: torch.Tensor,
    *,
    rope_first: bool,
    eps: float = 1e-12,
    backend: str | None = None,
) -> torch.Tensor:
    """Cos-attention prologue: split heads, l2-normalise q and k, scale q per head, RoPE, cast; k/v to the cache.

    ``qkv`` is viewed ``(R, L, 3, H, c)`` -> q, k, v ``(R, H, L, c)``. RoPE rotates adjacent channel pairs
    ``(2j, 2j+1)``: ``(x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)``.

    - ``rope_first=False`` (Infinity): ``q = normalize(q.float()) * scale_mul``, ``k = normalize(k.float())``,
      both rotated in float32, then cast to ``dt = qkv.dtype``.
    - ``rope_first=True`` (STAR): q and k rotated in float32 and cast to ``dt``; then ``normalize`` in ``dt``
      (the norm rounded to ``dt``, the quotient rounded to ``dt``), q times ``scale_mul`` rounded to ``dt``.

    ``normalize(t) = t / max(||t||_2, eps)`` over the head dim (``F.normalize``).

    Args:
        qkv: ``(R, L, 3C)`` float32/float16/bfloat16 (the qkv projection with its bias), any strides.
        scale_mul: ``(H,)`` or ``(1, H, 1, 1)`` float32: ``exp(min(scale_mul_1H11, ln 100))``; ``H`` heads of an even
            head dim ``c = C / H``.
        cos, sin: float32 ``(L, c/2)`` (shared by the rows) or ``(R, L, c/2)`` (per row), or both None.
        k_out, v_out: ``(R, H, L, c)`` in ``dt``, any strides (views into a preallocated KV cache): the op writes the
            normalised, rotated k and the raw v there. They must not overlap ``qkv`` or each other.
        rope_first: the order described above.
        eps: floor of the l2 norm.
        backend: ``"reference"``, ``"triton"`` or None.
    Returns:
        q ``(R, H, L, c)`` contiguous in ``dt``.
    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, devices, an unavailable backend or an input that
        requires grad.
    """
    validation.check_qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first, eps)
    _check_no_grad(qkv=qkv, scale_mul=scale_mul, cos=cos, sin=sin, k_out=k_out, v_out=v_out)
    return torch.ops.stagevar.qk_norm_rope.default(
        qkv, scale_mul, cos, sin, k_out, v_out, rope_first=rope_first, eps=float(eps), backend=backend
    )


def residual_gate(
    x: torch.Tensor,
    y: torch.Tensor,
    gate: torch.Tensor | None = None,
    *,
    scale: float = 1.0,
    round_to_y: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """Gated residual add of a block branch.

    - ``gate`` None: ``x + y.float() * scale`` (``scale == 1``: ``x + y.float()``). Infinity's cross-attention
      (``ca_gamma``), STAR's three adds.
    - ``round_to_y``: ``x + (y * gate).to(y.dtype)`` (Infinity's self-attention: ``x + sa_out.mul_(g1)``).
    - otherwise: ``x + y * gate`` (Infinity's FFN).

    Args:
        x: ``(R, L, C)`` float32/float16/bfloat16 residual stream, any strides.
        y: ``(R, L, C)`` or ``(1, L, C)`` (broadcast over the rows), float32/float16/bfloat16, any strides.
        gate: ``(R or 1, 1, C)`` float32 or None.
        scale: multiplier of ``y`` without a gate (a gate requires ``scale == 1``).
        round_to_y: see above; needs a gate.
        backend: ``"reference"``, ``"triton"`` or None.
    Returns:
        ``(R, L, C)`` contiguous, in torch's promoted dtype of the expression (float32 when ``x`` is float32).
    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, devices, an unavailable backend or an input that
        requires grad.
    """
    validation.check_residual_gate(x, y, gate, scale, round_to_y)
    _check_no_grad(x=x, y=y, gate=gate)
    return torch.ops.stagevar.residual_gate.default(
        x, y, gate, scale=float(scale), round_to_y=round_to_y, backend=backend
    )


def bit_pair_probs(logits: torch.Tensor, *, top_k: int, top_p: float, backend: str | None = None) -> torch.Tensor:
    """Probabilities of each bit's two values after Infinity's top-k/top-p filter of the logit pair.

    Exactly ``top_k_top_p_`` on the ``(B, L*d, 2)`` view followed by a softmax: ``top_k == 1`` keeps the larger
    logit (both on a tie), ``top_k >= 2`` or ``<= 0`` keeps both; ``top_p > 0`` removes the smaller logit (the first
    one on a tie) when its probability is ``<= 1 - top_p`` (float32), and never the larger one. ``torch.multinomial``
    on the result draws the bits (outside the op: its draws are the official random stream).

    Args:
        logits: ``(B, L, 2d)`` float32, any strides; not modified.
        top_k: int; top_p: float.
        backend: ``"reference"``, ``"triton"`` or None.
    Returns:
        ``(B*L*d, 2)`` float32 contiguous.
    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, an unavailable backend or an input that requires
        grad.
    """
    validation.check_bit_pair_probs(logits, top_k, top_p)
    _check_no_grad(logits=logits)
    return torch.ops.stagevar.bit_pair_probs.default(logits, top_k=top_k, top_p=float(top_p), backend=backend)


def _check_no_grad(**tensors) -> None:
    from ..validation import check_no_grad

    for name, t in tensors.items():
        if t is not None:
            check_no_grad(name, t)
