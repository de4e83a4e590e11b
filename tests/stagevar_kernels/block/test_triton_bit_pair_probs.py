"""The Triton ``bit_pair_probs`` kernel against the reference (``block.testing.TOLERANCES``): same filter decisions,
probabilities to an ulp or two of ``exp``.

CPU runs it under ``TRITON_INTERPRET=1`` (``tests/conftest.py``), CUDA compiled."""

import pytest
import torch

pytest.importorskip("triton")

from stagevar_kernels.block import bit_pair_probs, reference  # noqa: E402
from stagevar_kernels.block.testing import tolerance  # noqa: E402

# [-inf, -inf] pairs give NaN (as torch does): numpy warns about -inf - -inf under the interpreter.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

FILTERS = [(0, 0.0), (1, 0.0), (2, 0.0), (900, 0.97), (1, 0.9), (0, 0.5), (0, 0.3), (-1, 1.0), (2, 1.2), (1, 0.5)]


@pytest.fixture
def device(triton_device):
    return triton_device


def _logits(device, B=2, L=37, d=13):
    logits = torch.randn(B, L, 2 * d) * 3
    flat = logits.view(-1, 2)
    special = [[1.5, 1.5], [-torch.inf, 0.3], [2.0, -torch.inf], [0.0, 0.0], [80.0, -80.0], [-0.5, 0.5],
               [-torch.inf, -torch.inf], [3.0, 2.9], [2.9, 3.0]]  # fmt: skip
    flat[: len(special)] = torch.tensor(special)
    return logits.to(device)


def _check(logits, top_k, top_p):
    want = reference.bit_pair_probs(logits, top_k, top_p)
    got = bit_pair_probs(logits, top_k=top_k, top_p=top_p, backend="triton")
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, equal_nan=True, **tolerance("bit_pair_probs", torch.float32))
    assert torch.equal(got == 0, want == 0), "a filter decision differs"


@pytest.mark.parametrize("top_k,top_p", FILTERS)
def test_matches_reference(device, top_k, top_p):
    _check(_logits(device), top_k, top_p)


def test_strided(device):
    logits = _logits(device).transpose(0, 1).contiguous().transpose(0, 1)
    _check(logits, 1, 0.9)
    _check(torch.cat([logits, logits], dim=2)[:, :, ::2], 0, 0.8)
