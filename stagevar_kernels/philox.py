"""The random stream of the ops, in plain torch: the contract every backend reproduces.

Generator
    Philox4x32-10 exactly as Triton's ``tl.philox(seed, c0, c1, c2, c3)`` computes it: key
    ``(k0, k1) = (seed & 0xFFFFFFFF, seed >> 32)``, round multipliers 0xD2511F53 / 0xCD9E8D57, key
    increments 0x9E3779B9 / 0xBB67AE85, ten rounds. One call maps a 4-word counter to 4 uint32 words.

Uniforms
    ``u(bits) = (2 * (bits >> 9) + 1) * 2**-24``: a float32 in (0, 1), computed exactly in float32 by every
    backend (23 random bits, never 0 or 1, so every logarithm below is finite).

Projection matrix ``Q_b`` (``M x rank``, entries N(0, 1/rank))
    ``Q_b[i, j] = n_b[i, j] * s`` with ``s = float32(1 / sqrt(rank))`` and ``n_b[i, j]`` a standard normal from
    the counter ``(c0, c1, c2, c3) = (i, j // 4, b, 0)``: its words ``(w0, w1, w2, w3)`` give two Box-Muller
    pairs, all in float32::

        rad_a = sqrt(-2 * log(u(w0)));  theta_a = 6.2831855 * u(w1)
        rad_b = sqrt(-2 * log(u(w2)));  theta_b = 6.2831855 * u(w3)
        n[i, 4g + 0] = rad_a * cos(theta_a);  n[i, 4g + 1] = rad_a * sin(theta_a)
        n[i, 4g + 2] = rad_b * cos(theta_b);  n[i, 4g + 3] = rad_b * sin(theta_b)

    The kernels apply ``s`` once to the fp32 accumulator: ``xr[b] = s * (n_b^T @ x[b])``.

Gumbel keys for the row sampling
    Row ``i`` of batch ``b`` uses word ``w0`` of the counter ``(i, 0, b, 1)``:
    ``key[b, i] = log(w[b, i]) - log(-log(u(w0)))`` with ``w[b, i] = sum_d float32(x[b, i, d])**2`` accumulated
    in fp32; rows whose ``w`` is zero or not finite get ``key = -inf``. The ``rank`` rows with the largest keys are
    chosen, ties (the ``-inf`` rows among them) going to the lower index, and returned sorted ascending. Taking
    the top ``r`` of ``log w + Gumbel`` draws ``r`` distinct rows, each successive draw with probability
    proportional to ``w`` among the rows left (Frieze-Kannan-Vempala sampling without replacement).

Seeds
    Every function takes the seed as a Python int in ``[0, 2**63)`` or as an int64 tensor with one element
    (shape ``()`` or ``(1,)``) on the device of the result; a tensor seed is read on the device (no host
    synchronisation), which is what lets one captured CUDA graph draw new numbers when the caller rewrites the
    tensor in place. Both forms give the same numbers for the same value.

Everything here is computed in int64 arithmetic masked to 32 bits, so it runs on any torch device.
"""

from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF
ROUND_A = 0xD2511F53
ROUND_B = 0xCD9E8D57
KEY_A = 0x9E3779B9
KEY_B = 0xBB67AE85
N_ROUNDS = 10
TWO_PI_F32 = 6.2831855  # float32(2 * pi), as the kernels spell it
STREAM_PROJECTION = 0
STREAM_GUMBEL = 1
MAX_SEED = 2**63 - 1  # seeds travel to Triton as int64 kernel arguments


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of the 64-bit product of the constant ``a`` and ``b`` (int64 holding uint32)."""
    # a * b can reach 2**64 and overflow int64, so split b into 16-bit halves.
    b_lo = b & 0xFFFF
    b_hi = b >> 16
    p_lo = a * b_lo  # < 2**48
    p_hi = a * b_hi  # < 2**48
    mid = p_hi + (p_lo >> 16)  # < 2**49
    lo = ((mid & 0xFFFF) << 16) | (p_lo & 0xFFFF)
    hi = mid >> 16
    return hi & MASK32, lo & MASK32


Seed = int | torch.Tensor


def key_words(seed: Seed) -> tuple:
    """The Philox key ``(seed & 0xFFFFFFFF, seed >> 32)``: two ints, or two int64 0-d tensors for a tensor seed."""
    if isinstance(seed, torch.Tensor):
        s = seed.reshape(()).to(torch.int64)  # a view for shape () or (1,): stays on the device, no sync
        return s & MASK32, (s >> 32) & MASK32
    return seed & MASK32, (seed >> 32) & MASK32


def philox4x32(
    seed: Seed, c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, n_rounds: int = N_ROUNDS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32 of counters ``(c0, c1, c2, c3)`` under ``seed``; bit-identical to Triton's ``tl.philox``.

    Args:
        seed: int in [0, 2**63) or a one-element int64 tensor on the counters' device (see "Seeds").
        c0, c1, c2, c3: integer tensors (broadcastable) holding values in [0, 2**32).
    Returns:
        four int64 tensors holding the uint32 output words.
    """
    k0, k1 = key_words(seed)
    c0, c1, c2, c3 = (torch.as_tensor(c).to(torch.int64) & MASK32 for c in (c0, c1, c2, c3))
    c0, c1, c2, c3 = torch.broadcast_tensors(c0, c1, c2, c3)
    for _ in range(n_rounds):
        hi_b, lo_b = _mulhilo(ROUND_B, c2)
        hi_a, lo_a = _mulhilo(ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + KEY_A) & MASK32
        k1 = (k1 + KEY_B) & MASK32
    return c0, c1, c2, c3


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """float32 uniforms in (0, 1) from uint32 words held in an integer tensor: ``(2*(bits>>9)+1) * 2**-24``."""
    odd = ((bits >> 9) * 2 + 1).to(torch.float32)  # < 2**24: exact in float32
    return odd * (2.0**-24)


def standard_normals(seed: Seed, batch: int, rows: int, cols: int, device=None) -> torch.Tensor:
    """The unscaled projection normals ``n[b, i, j]`` of the module docstring: float32 ``(batch, rows, cols)``."""
    groups = (cols + 3) // 4
    b = torch.arange(batch, device=device, dtype=torch.int64).view(batch, 1, 1)
    i = torch.arange(rows, device=device, dtype=torch.int64).view(1, rows, 1)
    g = torch.arange(groups, device=device, dtype=torch.int64).view(1, 1, groups)
    w0, w1, w2, w3 = philox4x32(seed, i, g, b, torch.zeros((), dtype=torch.int64, device=device) + STREAM_PROJECTION)
    rad_a = torch.sqrt(-2.0 * torch.log(uniform_from_bits(w0)))
    rad_b = torch.sqrt(-2.0 * torch.log(uniform_from_bits(w2)))
    theta_a = TWO_PI_F32 * uniform_from_bits(w1)
    theta_b = TWO_PI_F32 * uniform_from_bits(w3)
    n = torch.stack(
        (
            rad_a * torch.cos(theta_a),
            rad_a * torch.sin(theta_a),
            rad_b * torch.cos(theta_b),
            rad_b * torch.sin(theta_b),
        ),
        dim=-1,
    )  # (batch, rows, groups, 4)
    return n.reshape(batch, rows, groups * 4)[:, :, :cols]


def projection_scale(rank: int) -> float:
    """``s = float32(1/sqrt(rank))``, the factor that turns the standard normals into N(0, 1/rank) entries."""
    return float(torch.tensor(1.0 / math.sqrt(rank), dtype=torch.float32))


def projection_matrix(seed: Seed, batch: int, rows: int, rank: int, device=None) -> torch.Tensor:
    """``Q`` of the contract, float32 ``(batch, rows, rank)`` with N(0, 1/rank) entries (for tests and baselines)."""
    return standard_normals(seed, batch, rows, rank, device) * projection_scale(rank)


def gumbel_noise(seed: Seed, batch: int, rows: int, device=None) -> torch.Tensor:
    """Standard Gumbel draws ``-log(-log(u))`` of the row-sampling stream: float32 ``(batch, rows)``."""
    b = torch.arange(batch, device=device, dtype=torch.int64).view(batch, 1)
    i = torch.arange(rows, device=device, dtype=torch.int64).view(1, rows)
    zero = torch.zeros((), dtype=torch.int64, device=device)
    w0, _, _, _ = philox4x32(seed, i, zero, b, zero + STREAM_GUMBEL)
    return -torch.log(-torch.log(uniform_from_bits(w0)))


def sampling_keys(sq_norms: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
    """``log(w) + g`` where ``w`` is finite and positive, ``-inf`` elsewhere (float32, same shape)."""
    ok = torch.isfinite(sq_norms) & (sq_norms > 0)
    safe = torch.where(ok, sq_norms, torch.ones_like(sq_norms))
    return torch.where(ok, torch.log(safe) + gumbel, torch.full_like(sq_norms, -math.inf))


def orderable_keys(keys: torch.Tensor) -> torch.Tensor:
    """int64 codes whose integer order is (key descending, index ascending): the selection's total order.

    ``code = ord(key) * 2**32 + (2**32 - 1 - i)`` where ``ord`` maps float32 bits to a signed int32 with the same
    order as the floats (keys are never NaN). The ``rank`` largest codes are the chosen rows.
    """
    bits = keys.contiguous().view(torch.int32).to(torch.int64)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    index = torch.arange(keys.shape[-1], device=keys.device, dtype=torch.int64)
    return ordered * (2**32) + (MASK32 - index)


def select_rows(keys: torch.Tensor, rank: int) -> torch.Tensor:
    """The chosen row indices: the ``rank`` largest keys in the total order, sorted ascending. int64 ``(B, rank)``."""
    codes = orderable_keys(keys)
    top = torch.topk(codes, rank, dim=-1, sorted=False).values
    idx = MASK32 - (top & MASK32)
    return torch.sort(idx, dim=-1).values
