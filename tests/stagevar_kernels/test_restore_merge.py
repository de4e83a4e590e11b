"""restore_merge against F.interpolate + scatter, written out independently of the reference."""

import pytest
import torch
import torch.nn.functional as F

from stagevar_kernels import RESTORE_MODES, reference, restore_merge
from stagevar_kernels.testing import device_backend_pairs, strided_like, tolerance


def _expected(y, idx, cache, src, dst, mode):
    batch, _, channels = cache.shape
    grid = cache.float().permute(0, 2, 1).reshape(batch, channels, *src)
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
    up = F.interpolate(grid, size=dst, mode=mode, **kwargs).reshape(batch, channels, -1).permute(0, 2, 1)
    out = up.clone()
    for b in range(batch):
        for j, p in enumerate(idx[b].tolist()):
            if 0 <= p < out.shape[1]:
                out[b, p] = y[b, j].float()
    return out


@pytest.mark.parametrize("mode", RESTORE_MODES)
@pytest.mark.parametrize(
    "src,dst", [((3, 3), (5, 5)), ((4, 5), (6, 7)), ((6, 6), (4, 4)), ((1, 1), (3, 2)), ((5, 7), (5, 7))]
)
def test_reference_matches_interpolate_then_scatter(mode, src, dst):
    batch, channels = 2, 6
    rank = min(4, dst[0] * dst[1])
    y = torch.randn(batch, rank, channels)
    cache = torch.randn(batch, src[0] * src[1], channels)
    idx = torch.stack([torch.randperm(dst[0] * dst[1])[:rank].sort().values for _ in range(batch)])
    out = reference.restore_merge(y, idx, cache, src, dst, mode)
    torch.testing.assert_close(out, _expected(y, idx, cache, src, dst, mode), atol=1e-6, rtol=1e-6)


def test_nearest_integer_upsample_repeats_rows():
    cache = torch.arange(4.0).view(1, 4, 1)  # a 2x2 grid: 0 1 / 2 3
    idx = torch.tensor([[0]])
    out = reference.restore_merge(torch.tensor([[[9.0]]]), idx, cache, (2, 2), (4, 4), "nearest")
    grid = out.view(4, 4)
    assert grid[0, 0] == 9
    assert grid[0, 1] == 0 and grid[1, 1] == 0 and grid[0, 2] == 1 and grid[3, 3] == 3 and grid[2, 0] == 2


def test_out_of_range_indices_are_ignored_and_duplicates_pick_a_candidate():
    y = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    cache = torch.zeros(1, 4, 1)
    idx = torch.tensor([[-1, 2, 2, 99]])
    out = reference.restore_merge(y, idx, cache, (2, 2), (3, 3), "bilinear")
    assert out[0, 2, 0].item() in (2.0, 3.0)
    assert torch.count_nonzero(out) == 1


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", RESTORE_MODES)
@pytest.mark.parametrize("device,backend", device_backend_pairs())
def test_backends_match_reference(device, backend, mode, dtype, layout):
    src, dst, rank, channels = (4, 5), (7, 6), 9, 19
    y = strided_like(torch.randn(2, rank, channels).to(device=device, dtype=dtype), layout)
    cache = strided_like(torch.randn(2, src[0] * src[1], channels).to(device=device, dtype=dtype), layout)
    idx = torch.stack([torch.randperm(dst[0] * dst[1])[:rank].sort().values for _ in range(2)]).to(device)
    out = restore_merge(y, idx, cache, src, dst, mode, backend=backend)
    assert out.shape == (2, dst[0] * dst[1], channels) and out.dtype == dtype and out.is_contiguous()
    want = _expected(y.cpu(), idx.cpu(), cache.cpu(), src, dst, mode)
    torch.testing.assert_close(out.cpu().float(), want, **tolerance(dtype))
