"""``bit_pair_probs``: the reference op equals Infinity's sampler filter + softmax bit for bit, including ties and
``-inf``; registration; argument checks."""

import pytest
import torch

from stagevar.models.sampling import filter_top_k_top_p_
from stagevar_kernels.block import bit_pair_probs

FILTERS = [(0, 0.0), (1, 0.0), (2, 0.0), (900, 0.97), (1, 0.9), (0, 0.5), (0, 0.3), (-1, 1.0), (2, 1.2), (1, 0.5)]


def _inline(logits, top_k, top_p):
    """The sequence of ``bitwise.sample_bits`` before ``torch.multinomial``."""
    B = logits.shape[0]
    pairs = logits.clone().reshape(B, -1, 2)
    filter_top_k_top_p_(pairs, top_k, top_p)
    return pairs.softmax(dim=-1).view(-1, 2)


def _logits(B=2, L=7, d=9):
    logits = torch.randn(B, L, 2 * d) * 3
    flat = logits.view(-1, 2)
    flat[0] = torch.tensor([1.5, 1.5])  # tie
    flat[1] = torch.tensor([-torch.inf, 0.3])
    flat[2] = torch.tensor([2.0, -torch.inf])
    flat[3] = torch.tensor([0.0, 0.0])
    flat[4] = torch.tensor([80.0, -80.0])  # the smaller probability underflows to 0
    flat[5] = torch.tensor([-0.5, 0.5])
    return logits


@pytest.mark.parametrize("top_k,top_p", FILTERS)
def test_bit_exact(top_k, top_p):
    logits = _logits()
    before = logits.clone()
    got = bit_pair_probs(logits, top_k=top_k, top_p=top_p)
    assert torch.equal(logits, before), "logits were modified"
    want = _inline(logits, top_k, top_p)
    assert got.shape == want.shape and got.is_contiguous() and torch.equal(got, want)


def test_strided_logits():
    logits = _logits().transpose(0, 1).contiguous().transpose(0, 1)
    assert torch.equal(bit_pair_probs(logits, top_k=1, top_p=0.9), _inline(logits, 1, 0.9))


def test_rules():
    logits = torch.tensor([[[1.0, 1.0, 0.0, 2.0, 3.0, 2.9]]])
    # top_k = 1 keeps the larger logit, both on a tie.
    torch.testing.assert_close(
        bit_pair_probs(logits, top_k=1, top_p=0.0), torch.tensor([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
    )
    # top_p removes the smaller entry when its probability <= 1 - top_p; on a tie the first entry goes.
    got = bit_pair_probs(logits, top_k=0, top_p=0.5)
    assert got[0].tolist() == [0.0, 1.0] and got[1].tolist() == [0.0, 1.0] and got[2].tolist() == [1.0, 0.0]
    got = bit_pair_probs(logits, top_k=0, top_p=0.4)  # 0.475 (3 vs 2.9) <= 0.6: removed
    assert got[2].tolist() == [1.0, 0.0]
    got = bit_pair_probs(logits, top_k=0, top_p=0.6)  # 0.475 > 0.4: kept
    assert 0 < got[2, 1] < got[2, 0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"logits": torch.randn(2, 6)}, "^logits:"),
        ({"logits": torch.randn(2, 3, 5)}, "^logits:"),
        ({"logits": torch.randn(2, 3, 4).half()}, "^logits:"),
        ({"top_k": 1.0}, "^top_k:"),
        ({"top_p": "0.9"}, "^top_p:"),
        ({"backend": "cuda"}, "^backend:"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"logits": torch.randn(2, 3, 4), "top_k": 2, "top_p": 0.9, **kwargs}
    logits = args.pop("logits")
    with pytest.raises(ValueError, match=match):
        bit_pair_probs(logits, **args)


def test_gradients_are_refused():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="^logits: .*inference-only"):
        bit_pair_probs(logits, top_k=1, top_p=0.9)


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
def test_opcheck(layout):
    logits = _logits(2, 5, 3)
    if layout == "permuted":
        logits = logits.transpose(1, 2).contiguous().transpose(1, 2)
    elif layout == "sliced":
        logits = torch.cat([logits, logits], dim=2)[:, :, ::2]
    op = torch.ops.stagevar.bit_pair_probs.default
    torch.library.opcheck(op, (logits,), {"top_k": 1, "top_p": 0.9})
    torch.library.opcheck(op, (logits,), {"top_k": 0, "top_p": 0.0})


def test_compile_fullgraph():
    logits = _logits()

    def fn(logits):
        probs = bit_pair_probs(logits, top_k=1, top_p=0.9)
        return probs.argmax(dim=-1)

    assert torch.equal(torch.compile(fn, fullgraph=True, backend="aot_eager")(logits), fn(logits))
