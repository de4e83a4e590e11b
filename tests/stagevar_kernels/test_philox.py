"""The random stream in torch: bit-identical to Triton's tl.philox, and the distributions it promises."""

import importlib.util
import math

import pytest
import torch

from stagevar_kernels import philox

HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.mark.interpreter
@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 + 7, 2**40 + 77, 2**63 - 1])
def test_philox_matches_triton(seed):
    import triton
    import triton.language as tl

    @triton.jit
    def philox_kernel(out_ptr, seed, N: tl.constexpr):
        i = tl.arange(0, N)
        c0 = i.to(tl.uint32) * 7 + 3
        c1 = (i.to(tl.uint32) * 13) ^ 0xF0F0F0F0
        c2 = i.to(tl.uint32) + 5
        c3 = i.to(tl.uint32) * 0 + 1
        a, b, c, d = tl.philox(seed, c0, c1, c2, c3)
        tl.store(out_ptr + i * 4 + 0, a)
        tl.store(out_ptr + i * 4 + 1, b)
        tl.store(out_ptr + i * 4 + 2, c)
        tl.store(out_ptr + i * 4 + 3, d)

    n = 64
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = torch.zeros(n * 4, dtype=torch.int32, device=device)
    philox_kernel[(1,)](out, seed, N=n)
    got = out.view(n, 4).cpu().to(torch.int64) & philox.MASK32
    i = torch.arange(n, dtype=torch.int64)
    want = torch.stack(philox.philox4x32(seed, i * 7 + 3, (i * 13) ^ 0xF0F0F0F0, i + 5, i * 0 + 1), dim=-1)
    assert torch.equal(got, want)


def test_philox_known_answer():
    # Random123's published known-answer vector for philox4x32-10 with zero key and counter.
    words = philox.philox4x32(0, *(torch.zeros(1, dtype=torch.int64) for _ in range(4)))
    assert [int(w) for w in words] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_uniforms_are_open_interval_and_exact():
    bits = torch.tensor([0, 511, 512, 2**32 - 1], dtype=torch.int64)
    u = philox.uniform_from_bits(bits)
    assert u.dtype == torch.float32
    assert u[0].item() == 2.0**-24 and u[1].item() == 2.0**-24
    assert u[2].item() == 3 * 2.0**-24
    assert u[3].item() == 1 - 2.0**-24
    assert bool(((u > 0) & (u < 1)).all())


def test_normals_are_standard():
    n = philox.standard_normals(7, batch=2, rows=300, cols=301)
    assert n.shape == (2, 300, 301)
    assert abs(n.mean().item()) < 0.01
    assert abs(n.std().item() - 1) < 0.01
    # Columns 4g..4g+3 come from one counter: they must still be uncorrelated.
    flat = n.reshape(-1, 301)[:, :300].reshape(-1, 75, 4)
    corr = torch.corrcoef(flat.reshape(-1, 4).T)
    assert (corr - torch.eye(4)).abs().max() < 0.02


def test_normals_depend_on_seed_batch_and_position():
    a = philox.standard_normals(1, batch=2, rows=5, cols=9)
    b = philox.standard_normals(2, batch=2, rows=5, cols=9)
    assert not torch.equal(a, b)
    assert not torch.equal(a[0], a[1])
    # A prefix of columns does not depend on how many columns are drawn.
    assert torch.equal(philox.standard_normals(1, batch=2, rows=5, cols=3), a[:, :, :3])


def test_gumbel_noise_distribution():
    g = philox.gumbel_noise(3, batch=4, rows=20000)
    assert torch.isfinite(g).all()
    assert abs(g.mean().item() - 0.5772) < 0.02  # Euler-Mascheroni constant
    assert abs(g.var().item() - math.pi**2 / 6) < 0.05


def test_orderable_keys_total_order():
    keys = torch.tensor([[1.5, -math.inf, -2.0, 1.5, 0.0, -0.0, math.inf, -math.inf]])
    idx = philox.select_rows(keys, 8)
    assert idx.tolist() == [list(range(8))]
    codes = philox.orderable_keys(keys)[0]
    order = torch.argsort(codes, descending=True).tolist()
    # inf, then 1.5 (index 0 before 3), 0.0, -0.0, -2.0, then -inf rows lowest index first.
    assert order == [6, 0, 3, 4, 5, 2, 1, 7]


def test_select_rows_sorted_distinct():
    keys = torch.randn(3, 50)
    idx = philox.select_rows(keys, 17)
    assert idx.shape == (3, 17)
    assert torch.equal(idx, idx.sort(dim=-1).values)
    for row, k in zip(idx, keys):
        assert len(set(row.tolist())) == 17
        assert set(row.tolist()) == set(torch.topk(k, 17).indices.tolist())
