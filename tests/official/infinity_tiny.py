"""Tiny random-weight Infinity models for the official-code tests: an official object built from the upstream
classes (``infinity_official`` fixture in ``conftest.py``), the same weights loaded into our classes, random text
features and the 0.06M scale list."""

import torch

TINY = dict(depth=4, embed_dim=64, num_heads=2, mlp_ratio=4, block_chunks=2)


def build_official(infinity_official, patchify: bool, seed: int, pn: str = "0.06M"):
    """(official Infinity, official VAE) of ``TINY`` size with random non-zero biases, on CPU in fp32.

    ``infinity_official``: ``(infinity module, vae_model)`` of an official source tree (Infinity's or FastVAR's
    copy of it); ``pn``: the size the model is built for."""
    inf_mod, vae_model = infinity_official
    torch.manual_seed(seed)
    if patchify:
        vae = vae_model(None, "dynamic", 4, 2**4, patch_size=2, encoder_ch_mult=[1, 2], decoder_ch_mult=[1, 2])
    else:
        vae = vae_model(None, "dynamic", 8, 2**8, patch_size=4, encoder_ch_mult=[1, 1, 2], decoder_ch_mult=[1, 1, 2])
    vae.eval()
    model = inf_mod.Infinity(
        vae_local=vae,
        text_channels=128,
        text_maxlen=32,
        shared_aln=True,
        raw_scale_schedule=None,
        checkpointing="full-block",
        customized_flash_attn=False,
        fused_norm=True,
        pad_to_multiplier=128,
        use_flex_attn=False,
        add_lvl_embeding_only_first_block=1,
        use_bit_label=1,
        rope2d_each_sa_layer=1,
        rope2d_normalized_by_hw=2,
        pn=pn,
        apply_spatial_patchify=int(patchify),
        inference_mode=True,
        train_h_div_w_list=[1.0],
        **TINY,
    )
    model.eval().requires_grad_(False)
    model.cond_drop_rate = 0.0  # upstream forward drops text at random even in eval
    model.rng = torch.Generator("cpu")
    with torch.no_grad():  # random non-zero biases everywhere, so that every parameter matters
        g = torch.Generator().manual_seed(seed)
        for name, p in model.named_parameters():
            if name.endswith(("bias", "v_bias", "q_bias")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model, vae


def ours_from_official(official_model, official_vae, cfg_name, tmp_path):
    """(our Infinity of config ``cfg_name``, our VAE) loaded from checkpoints saved from the official objects."""
    from stagevar.models.infinity import BSQVAE, VAEConfig, build_infinity, load_infinity_weights, load_vae_weights

    path = str(tmp_path / "official_infinity.pth")
    torch.save(official_model.state_dict(), path)  # a checkpoint saved from the official model
    model = build_infinity(cfg_name)
    assert load_infinity_weights(model, path).ok
    vpath = str(tmp_path / "official_vae.pth")
    torch.save({"vae": official_vae.state_dict()}, vpath)
    a = official_vae.args  # the official vae_model() fixes base_ch=128 and num_res_blocks=2
    vae = BSQVAE(VAEConfig(a.codebook_dim, a.patch_size, tuple(a.decoder_ch_mult), a.base_ch, a.num_res_blocks)).eval()
    rep = load_vae_weights(vae, vpath)
    assert rep.ok and any(k.startswith("encoder.") for k in rep.ignored)
    return model, vae


def random_text(lens, seed=0):
    """Random 128-wide text features of one prompt per entry of ``lens`` (its token count)."""
    from stagevar.models.infinity import TextFeatures

    g = torch.Generator().manual_seed(seed)
    return TextFeatures(torch.randn(sum(lens), 128, generator=g), list(lens))


def tiny_scales(h_div_w=1.0):
    """The 0.06M scale list of aspect ratio ``h_div_w`` as the official ``scale_schedule``: ``[(1, h, w), ...]``."""
    from stagevar.models.infinity import get_scale_schedule

    return [(1, h, w) for h, w in get_scale_schedule(h_div_w, "0.06M")]
