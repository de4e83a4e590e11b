"""``qk_norm_rope``: the reference op equals the inline attention code of Infinity and STAR bit for bit (q, and k/v
written into strided views of a preallocated cache); registration; argument checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from stagevar.models.infinity import rope as inf_rope
from stagevar.models.infinity.blocks import _linear, self_attention
from stagevar.models.infinity.modules import SelfAttention as InfinitySelfAttention
from stagevar.models.star import rope as star_rope
from stagevar.models.star.blocks import SelfAttention as StarSelfAttention
from stagevar.models.star.blocks import _scale_mul, self_attention_qkv
from stagevar_kernels.block import qk_norm_rope
from stagevar_kernels.block.testing import cache_views
from stagevar_kernels.testing import strided_like

DTYPES = [torch.float32, torch.bfloat16]


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module


def _check_cache(buf, k_out, v_out, k, v):
    assert torch.equal(k_out, k) and torch.equal(v_out, v)
    written = torch.zeros(buf.shape, dtype=torch.bool)
    for view in (k_out, v_out):  # mark the viewed elements through the same strides
        torch.as_strided(written, view.shape, view.stride(), view.storage_offset()).fill_(True)
    assert buf[~written].isnan().all(), "the op wrote outside k_out/v_out"


def _infinity_inline(sa, h, rope_cs, monkeypatch):
    """q, k, v as blocks.self_attention hands them to SDPA (the function is run as is)."""
    seen = {}
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.update(q=q, k=k, v=v)
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    _, (k, v) = self_attention(sa, h, rope_cs)
    monkeypatch.undo()
    assert torch.equal(seen["k"], k)
    return seen["q"], k, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rope", ["shared", "per_row", "none"])
@pytest.mark.parametrize("layout", ["rhlc", "rlhc"])
def test_infinity_bit_exact(dtype, rope, layout, monkeypatch):
    R, heads, c, (hh, ww) = 2, 3, 12, (3, 5)
    L, C = hh * ww, heads * c
    sa = _randomise(InfinitySelfAttention(C, heads)).to(dtype)
    h = torch.randn(R, L, C)  # the fp32 AdaLN output
    table = inf_rope.scale_table(hh, ww, 8, 8, c)
    if rope == "shared":
        rope_cs, cos, sin = inf_rope.gather_table(table, None), table[0], table[1]
    elif rope == "per_row":
        pos = torch.stack([torch.randperm(L) for _ in range(R)])
        rope_cs, cos, sin = inf_rope.gather_table(table, pos), table[0][pos], table[1][pos]
    else:  # no rotation: the identity angles in the inline code
        rope_cs, cos, sin = torch.stack([torch.ones(1, 1, L, c // 2), torch.zeros(1, 1, L, c // 2)]), None, None
    with torch.no_grad():
        q_want, k_want, v_want = _infinity_inline(sa, h, rope_cs, monkeypatch)
        bias = torch.cat((sa.q_bias, sa.zero_k_bias, sa.v_bias))
        qkv = _linear(h, sa.mat_qkv.weight, bias)
        scale_mul = sa.scale_mul_1H11.clamp_max(math.log(100.0)).float().exp()
        k_out, v_out, buf = cache_views(R, heads, L, c, dtype, "cpu", layout)
        q = qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first=False)
    assert q.dtype == dtype and q.is_contiguous()
    if rope == "none":  # x*1 - y*0 keeps every bit except the sign of a zero
        torch.testing.assert_close(q, q_want, atol=0, rtol=0)
        torch.testing.assert_close(k_out, k_want, atol=0, rtol=0)
        return
    assert torch.equal(q, q_want)
    _check_cache(buf, k_out, v_out, k_want, v_want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rope", ["shared", "per_row", "none"])
@pytest.mark.parametrize("layout", ["rhlc", "rlhc"])
def test_star_bit_exact(dtype, rope, layout):
    R, heads, c, pn = 3, 2, 8, 4
    L, C = pn * pn, heads * c
    attn = _randomise(StarSelfAttention(C, heads)).to(dtype)
    h = torch.randn(R, L, C).to(dtype)
    cos, sin = star_rope.rope_tables(c, (pn,), 100.0, 1.0)
    if rope == "per_row":
        pos = torch.stack([torch.randperm(L) for _ in range(R)])
        cos, sin = cos[pos], sin[pos]
    elif rope == "none":
        cos = sin = None
    with torch.no_grad():
        q_want, k_want, v_want = self_attention_qkv(attn, h, cos, sin)
        bias = torch.cat((attn.q_bias, attn.zero_k_bias, attn.v_bias))
        qkv = F.linear(h, attn.mat_qkv.weight, bias)
        k_out, v_out, buf = cache_views(R, heads, L, c, dtype, "cpu", layout)
        q = qk_norm_rope(qkv, _scale_mul(attn).float(), cos, sin, k_out, v_out, rope_first=True)
    assert q.dtype == dtype and q.is_contiguous()
    assert torch.equal(q, q_want)
    _check_cache(buf, k_out, v_out, k_want, v_want)


@pytest.mark.parametrize("rope_first", [False, True])
def test_strided_qkv(rope_first):
    R, H, L, c = 2, 3, 7, 10
    qkv = torch.randn(R, L, 3 * H * c)
    cos, sin = torch.randn(L, c // 2), torch.randn(L, c // 2)
    scale_mul = torch.rand(1, H, 1, 1) + 1
    k_ref, v_ref, _ = cache_views(R, H, L, c, torch.float32, "cpu")
    q_ref = qk_norm_rope(qkv, scale_mul, cos, sin, k_ref, v_ref, rope_first=rope_first)
    for layout in ("permuted", "sliced"):
        k_out, v_out, _ = cache_views(R, H, L, c, torch.float32, "cpu", "rlhc")
        q = qk_norm_rope(strided_like(qkv, layout), scale_mul.flatten(), cos.t().contiguous().t(), sin, k_out, v_out,
                         rope_first=rope_first)  # fmt: skip
        torch.testing.assert_close(q, q_ref, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(k_out, k_ref, atol=1e-6, rtol=1e-6)
        assert torch.equal(v_out, v_ref)


def _args(R=2, H=2, L=3, c=4, dtype=torch.float32):
    k_out, v_out, _ = cache_views(R, H, L, c, dtype, "cpu")
    return {
        "qkv": torch.randn(R, L, 3 * H * c).to(dtype),
        "scale_mul": torch.ones(H),
        "cos": torch.randn(L, c // 2),
        "sin": torch.randn(L, c // 2),
        "k_out": k_out,
        "v_out": v_out,
    }


@pytest.mark.parametrize(
    "change,match",
    [
        ({"qkv": torch.randn(2, 3, 25)}, "^qkv:"),
        ({"qkv": torch.randn(2, 3, 24).long()}, "^qkv:"),
        ({"scale_mul": torch.ones(3)}, "^qkv:"),
        ({"scale_mul": torch.ones(2).half()}, "^scale_mul:"),
        ({"scale_mul": torch.ones(2, 2, 1, 1)}, "^scale_mul:"),
        ({"cos": None}, "^cos/sin:"),
        ({"cos": torch.randn(3, 3)}, "^cos:"),
        ({"sin": torch.randn(3, 2).double()}, "^sin:"),
        ({"k_out": torch.empty(2, 2, 4, 4)}, "^k_out:"),
        ({"v_out": torch.empty(2, 2, 3, 4).half()}, "^v_out:"),
    ],
)
def test_bad_arguments(change, match):
    args = {**_args(), **change}
    with pytest.raises(ValueError, match=match):
        qk_norm_rope(**args, rope_first=False)


def test_bad_flags():
    with pytest.raises(ValueError, match="^rope_first:"):
        qk_norm_rope(**_args(), rope_first=1)
    with pytest.raises(ValueError, match="^eps:"):
        qk_norm_rope(**_args(), rope_first=True, eps=-1.0)
    with pytest.raises(ValueError, match="^backend:"):
        qk_norm_rope(**_args(), rope_first=True, backend="cuda")


def test_gradients_are_refused():
    args = _args()
    args["qkv"].requires_grad_()
    with pytest.raises(ValueError, match="^qkv: .*inference-only"):
        qk_norm_rope(**args, rope_first=False)
    with pytest.raises(RuntimeError, match="inference-only"):
        torch.ops.stagevar.qk_norm_rope(*args.values(), rope_first=False)
    with torch.no_grad():
        qk_norm_rope(**args, rope_first=False)


@pytest.mark.parametrize("layout", ["contiguous", "permuted", "sliced"])
@pytest.mark.parametrize("rope_first", [False, True])
def test_opcheck(layout, rope_first):
    args = _args(dtype=torch.bfloat16)
    args["qkv"] = strided_like(args["qkv"], layout)
    torch.library.opcheck(torch.ops.stagevar.qk_norm_rope.default, tuple(args.values()), {"rope_first": rope_first})
    args["cos"] = args["sin"] = None
    torch.library.opcheck(torch.ops.stagevar.qk_norm_rope.default, tuple(args.values()), {"rope_first": rope_first})


def test_compile_fullgraph():
    args = _args()
    k_ref, v_ref = torch.empty_like(args["k_out"]), torch.empty_like(args["v_out"])

    def fn(qkv, scale_mul, cos, sin, k_out, v_out):
        q = qk_norm_rope(qkv, scale_mul, cos, sin, k_out, v_out, rope_first=False)
        return F.scaled_dot_product_attention(q, k_out, v_out, scale=1.0)

    want = fn(*list(args.values())[:4], k_ref, v_ref)
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(*args.values())
    assert torch.equal(got, want)
    assert torch.equal(args["k_out"], k_ref) and torch.equal(args["v_out"], v_ref)
