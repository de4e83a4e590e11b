"""State-dict keys and shapes of the real 2B/8B models (built on the meta device) equal the official ones.

Expected data: the keys and shapes of the official modules (``infinity/models/infinity.py`` and ``basic.py`` of
FoundationVision/Infinity) built with the 2B and 8B configs; ``tests/official`` checks them against the code itself."""

import pytest

from stagevar.models.infinity import build_infinity

NON_BLOCK = {
    "infinity_2b": {
        "cfg_uncond": (512, 2048),
        "pos_start": (1, 1, 2048),
        "text_norm.weight": (2048,),
        "text_proj_for_sos.ca.mat_q": (1, 16, 128),
        "text_proj_for_sos.ca.v_bias": (2048,),
        "text_proj_for_sos.ca.zero_k_bias": (2048,),
        "text_proj_for_sos.ca.mat_kv.weight": (4096, 2048),
        "text_proj_for_sos.ca.proj.weight": (2048, 2048),
        "text_proj_for_sos.ca.proj.bias": (2048,),
        "text_proj_for_ca.0.weight": (2048, 2048),
        "text_proj_for_ca.0.bias": (2048,),
        "text_proj_for_ca.2.weight": (2048, 2048),
        "text_proj_for_ca.2.bias": (2048,),
        "lvl_embed.weight": (15, 2048),
        "word_embed.weight": (2048, 32),
        "word_embed.bias": (2048,),
        "shared_ada_lin.1.weight": (12288, 2048),
        "shared_ada_lin.1.bias": (12288,),
        "head_nm.ada_lin.1.weight": (4096, 2048),
        "head_nm.ada_lin.1.bias": (4096,),
        "head.weight": (64, 2048),
        "head.bias": (64,),
    },
    "infinity_8b": {
        "cfg_uncond": (512, 2048),
        "pos_start": (1, 1, 3584),
        "text_norm.weight": (2048,),
        "text_proj_for_sos.ca.mat_q": (1, 16, 224),
        "text_proj_for_sos.ca.v_bias": (3584,),
        "text_proj_for_sos.ca.zero_k_bias": (3584,),
        "text_proj_for_sos.ca.mat_kv.weight": (7168, 2048),
        "text_proj_for_sos.ca.proj.weight": (3584, 3584),
        "text_proj_for_sos.ca.proj.bias": (3584,),
        "text_proj_for_ca.0.weight": (3584, 2048),
        "text_proj_for_ca.0.bias": (3584,),
        "text_proj_for_ca.2.weight": (3584, 3584),
        "text_proj_for_ca.2.bias": (3584,),
        "lvl_embed.weight": (15, 3584),
        "word_embed.weight": (3584, 56),
        "word_embed.bias": (3584,),
        "shared_ada_lin.1.weight": (21504, 3584),
        "shared_ada_lin.1.bias": (21504,),
        "head_nm.ada_lin.1.weight": (7168, 3584),
        "head_nm.ada_lin.1.bias": (7168,),
        "head.weight": (112, 3584),
        "head.bias": (112,),
    },
}
# (chunks, blocks per chunk, C, heads, FFN hidden)
LAYOUT = {"infinity_2b": (8, 4, 2048, 16, 8192), "infinity_8b": (8, 5, 3584, 28, 14336)}
TOTAL_PARAMS = {"infinity_2b": 2.205e9, "infinity_8b": 8.376e9}


def block_shapes(C, H, F):
    return {
        "ada_gss": (1, 1, 6, C),
        "sa.scale_mul_1H11": (1, H, 1, 1),
        "sa.q_bias": (C,),
        "sa.v_bias": (C,),
        "sa.zero_k_bias": (C,),
        "sa.mat_qkv.weight": (3 * C, C),
        "sa.proj.weight": (C, C),
        "sa.proj.bias": (C,),
        "ca.v_bias": (C,),
        "ca.zero_k_bias": (C,),
        "ca.mat_q.weight": (C, C),
        "ca.mat_q.bias": (C,),
        "ca.mat_kv.weight": (2 * C, C),
        "ca.proj.weight": (C, C),
        "ca.proj.bias": (C,),
        "ffn.fc1.weight": (F, C),
        "ffn.fc1.bias": (F,),
        "ffn.fc2.weight": (C, F),
        "ffn.fc2.bias": (C,),
        "ca_norm.weight": (C,),
        "ca_norm.bias": (C,),
    }


@pytest.mark.parametrize("name", ["infinity_2b", "infinity_8b"])
def test_keys_and_shapes_equal_official(name):
    model = build_infinity(name, device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = dict(NON_BLOCK[name])
    chunks, per, C, H, F = LAYOUT[name]
    for i in range(chunks):
        for j in range(per):
            expected.update({f"block_chunks.{i}.module.{j}.{k}": s for k, s in block_shapes(C, H, F).items()})
    assert sorted(set(got) - set(expected)) == []
    assert sorted(set(expected) - set(got)) == []
    assert {k: got[k] for k in expected if got[k] != expected[k]} == {}
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - TOTAL_PARAMS[name]) / TOTAL_PARAMS[name] < 1e-3
    assert len(model.unregistered_blocks) == chunks * per
