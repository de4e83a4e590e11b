"""Bad input raises ValueError whose message names the argument, for both ops and every backend here."""

import pytest
import torch

import stagevar_kernels as sk


def good_pas():
    return {"x": torch.randn(2, 9, 4), "rank": 3, "seed": 1}


@pytest.mark.parametrize(
    "change,name",
    [
        ({"x": torch.randn(9, 4)}, "x"),
        ({"x": torch.randn(1, 2, 9, 4)}, "x"),
        ({"x": torch.randn(2, 9, 4).double()}, "x"),
        ({"x": torch.zeros(2, 9, 4, dtype=torch.int32)}, "x"),
        ({"x": [[1.0]]}, "x"),
        ({"x": torch.randn(2, 0, 4), "rank": 1}, "x"),
        ({"rank": 0}, "rank"),
        ({"rank": 10}, "rank"),
        ({"rank": 2.0}, "rank"),
        ({"rank": True}, "rank"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": torch.tensor(1, dtype=torch.int32)}, "seed"),
        ({"seed": torch.tensor([1, 2])}, "seed"),
        ({"seed": torch.tensor([[1]])}, "seed"),
        ({"seed": torch.tensor(1.0)}, "seed"),
        ({"seed": torch.empty((), dtype=torch.int64, device="meta")}, "seed"),
    ],
)
def test_project_and_sample_bad_input(change, name):
    args = good_pas() | change
    with pytest.raises(ValueError, match=f"^{name}: "):
        sk.project_and_sample(args["x"], args["rank"], args["seed"])
    fits_schema = isinstance(args["x"], torch.Tensor) and all(
        type(args[k]) is int and abs(args[k]) < 2**63 for k in ("rank", "seed")
    )
    if isinstance(args["seed"], torch.Tensor) and args["seed"].device == args["x"].device:
        # The op takes a device seed as seed_tensor (a meta tensor would route the dispatcher to the fake kernel).
        with pytest.raises(ValueError, match="^seed_tensor: "):
            torch.ops.stagevar.project_and_sample(args["x"], args["rank"], 0, None, args["seed"])
    if fits_schema:  # the dispatcher itself rejects what does not fit the schema's types
        with pytest.raises(ValueError, match=f"^{name}: "):
            torch.ops.stagevar.project_and_sample(args["x"], args["rank"], args["seed"])


def test_unknown_or_unavailable_backend():
    with pytest.raises(ValueError, match="^backend: "):
        sk.project_and_sample(torch.randn(1, 4, 2), 2, 0, backend="magic")
    with pytest.raises(ValueError, match="^backend: .*not available"):
        sk.project_and_sample(torch.randn(1, 4, 2), 2, 0, backend="cuda")


def good_rm():
    return {
        "y": torch.randn(2, 3, 4),
        "idx": torch.tensor([[0, 1, 2], [3, 4, 5]]),
        "cache": torch.randn(2, 6, 4),
        "src_hw": (2, 3),
        "dst_hw": (3, 3),
        "mode": "area",
    }


@pytest.mark.parametrize(
    "change,name",
    [
        ({"y": torch.randn(3, 4)}, "y"),
        ({"y": torch.randn(2, 3, 4).double()}, "y"),
        ({"idx": torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)}, "idx"),
        ({"idx": torch.tensor([0, 1, 2])}, "idx"),
        ({"idx": torch.tensor([[0, 1], [3, 4]])}, "idx"),
        ({"idx": torch.tensor([[0, 1, 2]])}, "idx/cache"),
        ({"cache": torch.randn(1, 6, 4)}, "idx/cache"),
        ({"cache": torch.randn(2, 6, 5)}, "cache"),
        ({"cache": torch.randn(2, 6, 4).half()}, "cache"),
        ({"src_hw": (3, 3)}, "src_hw"),
        ({"src_hw": (2, 3, 1)}, "src_hw"),
        ({"src_hw": (2.0, 3)}, "src_hw"),
        ({"dst_hw": (1, 2)}, "dst_hw"),
        ({"dst_hw": (0, 3)}, "dst_hw"),
        ({"mode": "trilinear"}, "mode"),
    ],
)
def test_restore_merge_bad_input(change, name):
    a = good_rm() | change
    with pytest.raises(ValueError, match=f"^{name}: "):
        sk.restore_merge(a["y"], a["idx"], a["cache"], a["src_hw"], a["dst_hw"], a["mode"])


def test_restore_merge_mixed_devices():
    a = good_rm()
    meta_cache = torch.empty(2, 6, 4, device="meta")
    with pytest.raises(ValueError, match="^idx/cache: .*device"):
        sk.restore_merge(a["y"], a["idx"], meta_cache, a["src_hw"], a["dst_hw"])


def test_empty_batch_returns_empty():
    xr, idx = sk.project_and_sample(torch.randn(0, 5, 3), 2, 0)
    assert xr.shape == (0, 2, 3) and idx.shape == (0, 2)
    out = sk.restore_merge(
        torch.randn(0, 2, 3), torch.zeros(0, 2, dtype=torch.long), torch.randn(0, 4, 3), (2, 2), (3, 3)
    )
    assert out.shape == (0, 9, 3)
