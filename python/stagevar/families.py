"""The model families StageVAR runs on (Infinity, STAR): one :class:`Family` record each, in one table.

Everything that differs between families outside their model packages is a field of the record: how to recognise
a model object (ours or the official class), the official entry point that ``accelerate`` drives, the schedule
presets and their default unit, loading checkpoints and encoding prompts (``stagevar generate``), the random-weight
models of :mod:`stagevar.zoo` and their sessions, and the model names the command line accepts. ``accelerate``, the
CLI, the zoo, the presets, the benchmark and the demo read :data:`FAMILIES`; none of them branches on a family's
name.

Adding a model family:

1. Write its model package ``stagevar/models/<family>/``: the model with the official parameter names, its VAE,
   a strict checkpoint loader, a session class implementing ``models.session.GenerationSession``, and
   ``official_call(model, runner, ...)`` with upstream's ``autoregressive_infer_cfg`` signature.
2. Write its glue in this module, next to Infinity's and STAR's: the structural predicate, ``load``, ``sessions``,
   ``build_random`` and ``random_text_encoder``.
3. Add one ``Family(...)`` to :data:`FAMILIES`: presets (the paper's operating point for the family), default unit,
   default guidance scale, checkpoint and random-weight model names.
4. Test it: ``tests/stagevar/test_families.py`` (recognition, presets, names) and the session tests under
   ``tests/stagevar/models/<family>/``. Nothing else changes: the CLI choices, ``accelerate``, the zoo, the
   benchmark and the peers registry (peers that support every family) pick it up from the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .models import infinity, star
from .models.star.official import official_call as star_official_call

PAPER_RANK_RATIO = 0.176  # alpha = 0.96 in the paper (Table 1), its chosen operating point
TABLE7_RANK_RATIOS = (0.016, 0.136, 0.210, 0.250, 0.256, 0.198, 0.157, 0.191)  # block_chunks.0..7 at 40x40

# Presets: StageSchedule fields in their JSON form (``unit`` defaults to the family's ``default_unit``). They are
# data rather than StageSchedule objects so that stagevar.schedule, which builds them, can import this table.
INFINITY_PRESETS = {
    "vanilla": {"projection": "none"},
    # Paper, section 4.1: the last three steps (40, 48, 64 at 1024px) with ratios 0.176 / 0 / 0, null guidance,
    # one projection per block chunk.
    "paper": {"rank_ratios": [PAPER_RANK_RATIO, 0.0, 0.0], "guidance": "null"},
    "skip-only": {"rank_ratios": [1.0, 0.0, 0.0], "projection": "none"},
    "cfg-drop-only": {"rank_ratios": [1.0, 1.0, 1.0], "guidance": "null", "projection": "none"},
    # The paper's per-chunk ranks at alpha = 0.96 for the 40x40 step (Table 7, Infinity-2B, GenEval prompts): their
    # mean is the 17.6% of the uniform preset. Needs 8 chunks (Infinity-2B and -8B).
    "paper-table7": {"rank_ratios": [list(TABLE7_RANK_RATIOS), 0.0, 0.0], "guidance": "null"},
}
# STAR (paper, section 4.1 and D.1): the last step at 0.176 with null guidance, one projection per block.
STAR_PRESETS = {
    "vanilla": {"projection": "none"},
    "paper": {"rank_ratios": [PAPER_RANK_RATIO], "guidance": "null"},
    "skip-only": {"rank_ratios": [0.0], "projection": "none"},
    "cfg-drop-only": {"rank_ratios": [1.0], "guidance": "null", "projection": "none"},
}

# A small model of Infinity's architecture that generates at the full 1024x1024 schedule in seconds on a CPU:
# 8 chunks of two blocks (the 2B has 8 chunks of four), 128 wide, and a thin VAE decoder with the 2B's 16x
# upsampling, so that the transformer, not the decoder, dominates as it does on a GPU.
DEMO_INFINITY = infinity.InfinityConfig(
    "infinity_demo",
    depth=16,
    embed_dim=128,
    num_heads=4,
    block_chunks=8,
    text_channels=128,
    text_maxlen=64,
    vae=infinity.VAEConfig(codebook_dim=32, patch_size=16, ch_mult=(1, 1, 1, 1, 1), base_ch=32, num_res_blocks=1),
)

Encode = Callable[[list[str]], object]  # prompts -> the family's text conditioning
SessionFactory = Callable[[list[str], list[int]], object]  # (prompts, seeds) -> a fresh GenerationSession


@dataclass(frozen=True, eq=False)
class Family:
    """One model family: everything the package does differently for it, outside its model package.

    Attributes:
        name: the table key and the family's name in schedules and results (``infinity``).
        title: its name in messages and help (``Infinity``).
        structure: what :attr:`is_model` checks, in words (for the error on an unknown object).
        is_model: ``is_model(obj)``: ``obj`` is a model of this family (ours or the official class), by structure.
        official_call: ``official_call(model, runner, *args, **kwargs)``: upstream's ``autoregressive_infer_cfg``
            over a session that ``runner(session, decode=, call_seed=)`` drives.
        default_unit: the unit of one projection in the presets (``chunk``/``block``).
        presets: preset name -> StageSchedule fields (JSON form; ``unit`` defaults to ``default_unit``).
        default_cfg: the guidance scale of upstream's scripts.
        text_encoder: the text encoder's name (help texts).
        checkpoints: model name -> config name of the released checkpoints (``stagevar generate --model``).
        random_models: model name -> what ``build_random`` builds (``stagevar.zoo`` names).
        aliases: earlier model names -> current ones.
        load: ``load(config, checkpoint, vae, text_encoder, device, negative_prompt) -> (model, vae, encode)``.
        sessions: ``sessions(model, vae, encode, *, h_div_w, pn, cfg, tau, negative_prompt) -> factory``, with
            ``factory(prompts, seeds)`` a fresh session.
        build_random: ``build_random(spec, device, *, h_div_w, pn, blocks_bf16) -> (model, vae, new_session)``,
            ``new_session(batch=1, seed=0, **session_kwargs)`` drawing random text conditioning.
        check_size: ``check_size(h_div_w, pn)``: ``ValueError`` for an image size the family cannot generate.
        random_text_encoder: ``random_text_encoder(transformers) -> (encoder, tokens, rows_per_prompt)``: the text
            encoder's architecture with random weights (its cost, for the benchmark).
        upstream_engine: its sessions take ``engine="upstream"`` (upstream's data flow, the benchmark's baseline).
    """

    name: str
    title: str
    structure: str
    is_model: Callable[[object], bool]
    official_call: Callable[..., object]
    default_unit: str
    presets: Mapping[str, Mapping[str, object]]
    default_cfg: float
    text_encoder: str
    checkpoints: Mapping[str, str]
    random_models: Mapping[str, object]
    aliases: Mapping[str, str]
    load: Callable[..., tuple]
    sessions: Callable[..., SessionFactory]
    build_random: Callable[..., tuple]
    check_size: Callable[[float, str], None]
    random_text_encoder: Callable[[object], tuple]
    upstream_engine: bool


# ----------------------------------------------------------------------------------------------- Infinity
INFINITY_CFG = 3.0


def _is_infinity(model) -> bool:
    return hasattr(model, "block_chunks") and hasattr(model, "text_proj_for_sos") and hasattr(model, "head_nm")


def _infinity_load(config: str, checkpoint, vae_path, text_encoder, device: torch.device, negative_prompt=None):
    model, vae = infinity.load_infinity(config, checkpoint, vae_path, device=device)
    # flan-T5 in fp16 on a GPU, as upstream's scripts; fp32 on a CPU
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    tokenizer, encoder = infinity.load_t5(text_encoder, device=device, dtype=dtype)
    return model, vae, lambda prompts: infinity.encode_prompts(tokenizer, encoder, prompts)


def _infinity_sessions(model, vae, encode: Encode, *, h_div_w: float, pn: str, cfg: float, tau: float, negative_prompt):
    scales = infinity.get_scale_schedule(h_div_w, pn)
    negative = encode([negative_prompt]) if negative_prompt else None  # else the model's cfg_uncond rows
    return lambda prompts, seeds: infinity.new_session(
        model, vae, scales, encode(prompts), negative_text=negative, seeds=seeds, cfg_list=cfg, tau_list=tau
    )


def random_infinity_text(cfg_channels: int, batch: int, seed: int, tokens: int = 32, device="cpu"):
    """Random T5-like features for ``batch`` prompts of ``tokens`` tokens (stand-in for flan-T5 outputs)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch * tokens, cfg_channels, generator=g) * 0.2
    return infinity.TextFeatures(feats.to(device), [tokens] * batch)


def _infinity_build_random(spec, device: torch.device, *, h_div_w: float, pn: str, blocks_bf16: bool | None):
    config, full_pn = spec
    cfg = config if isinstance(config, infinity.InfinityConfig) else infinity.get_config(config)
    model = infinity.build_infinity(cfg, device=device)
    if blocks_bf16 if blocks_bf16 is not None else device.type == "cuda":  # bf16 blocks on CUDA, as upstream
        model.blocks_to(torch.bfloat16)
    with torch.device(device):
        vae = infinity.BSQVAE(cfg.vae).eval().requires_grad_(False)
    scales = infinity.get_scale_schedule(h_div_w, full_pn if pn == "1M" else pn)

    def new_session(batch: int = 1, seed: int = 0, **kw):
        text = random_infinity_text(cfg.text_channels, batch, seed, device=device)
        kw = {"cfg_list": INFINITY_CFG, "tau_list": 0.5, "seeds": seed} | kw
        return infinity.new_session(model, vae, scales, text, **kw)

    return model, vae, new_session


def _any_size(h_div_w: float, pn: str) -> None:
    """Infinity draws every aspect-ratio template and size (the nearest template is used)."""


def _flan_t5_xl(transformers) -> tuple:
    """flan-T5-XL's encoder (1.2B parameters), prompts padded to 512 tokens as upstream."""
    config = transformers.T5Config(
        d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, feed_forward_proj="gated-gelu", vocab_size=32128
    )
    return transformers.T5EncoderModel(config), 512, 1


# ----------------------------------------------------------------------------------------------- STAR
STAR_CFG = 4.5


def _is_star(model) -> bool:
    blocks = getattr(model, "blocks", None)
    return blocks is not None and len(blocks) > 0 and hasattr(blocks[0], "cross_attn") and hasattr(model, "head_logits")


def _star_load(config: str, checkpoint, vae_path, text_encoder, device: torch.device, negative_prompt=None):
    model, vae = star.load_star(checkpoint, vae_path, config, device=device)  # no random init of 1.7B
    clip = star.load_clip_text_encoder(text_encoder, device=device)
    negative = negative_prompt or ""  # STAR's null rows encode the empty prompt
    return model, vae, lambda prompts: clip.encode(list(prompts) + [negative] * len(prompts))


def _star_sessions(model, vae, encode: Encode, *, h_div_w: float, pn: str, cfg: float, tau: float, negative_prompt):
    # the negative prompt is part of STAR's encoded rows (see _star_load); tau is Infinity's
    return lambda prompts, seeds: star.new_session(
        model, vae, encode(prompts), batch=len(prompts), seeds=seeds, cfg=cfg
    )


def random_star_text(batch: int, seed: int, width: int, device="cpu", tokens: int = 77):
    """Random CLIP-like conditioning: hidden ``(2B, 77, width)``, mask ``(2B, 77)``, pool ``(2B, width)``."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * batch, tokens, width, generator=g)
    mask = torch.zeros(2 * batch, tokens, dtype=torch.long)
    mask[:batch, :20] = 1  # prompts of 20 tokens
    mask[batch:, :2] = 1  # the empty prompt: start and end tokens
    pool = torch.randn(2 * batch, width, generator=g)
    return hidden.to(device), mask.to(device), pool.to(device)


def _star_build_random(spec: str, device: torch.device, *, h_div_w: float, pn: str, blocks_bf16: bool | None):
    # fp32 weights; on CUDA the session runs under its autocast, as upstream's fp16 scripts
    model, vae = star.build_star(spec, device=device)
    model.requires_grad_(False)
    vae.requires_grad_(False)
    cross = model.blocks[0].cross_attn.mat_kv.weight.shape[1]

    def new_session(batch: int = 1, seed: int = 0, **kw):
        text = random_star_text(batch, seed, cross, device=device)
        kw = {"cfg": STAR_CFG, "top_k": 600, "top_p": 0.8, "seeds": seed} | kw
        return star.new_session(model, vae, text, batch=batch, **kw)

    return model, vae, new_session


def _square_1024(h_div_w: float, pn: str) -> None:
    if h_div_w != 1.0 or pn != "1M":
        raise ValueError("h_div_w/pn: STAR generates square 1024x1024 images only")


def _open_clip_h(transformers) -> tuple:
    """A CLIP text model 1024 wide (OpenCLIP-H's shape), 77 tokens; the prompt and the null prompt rows."""
    config = transformers.CLIPTextConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=23,
        num_attention_heads=16,
        max_position_embeddings=77,
    )
    return transformers.CLIPTextModel(config), 77, 2


# ----------------------------------------------------------------------------------------------- the table
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="infinity",
            title="Infinity",
            structure="block_chunks, text_proj_for_sos, head_nm",
            is_model=_is_infinity,
            official_call=infinity.official_call,
            default_unit="chunk",
            presets=INFINITY_PRESETS,
            default_cfg=INFINITY_CFG,
            text_encoder="flan-T5-XL",
            checkpoints={"infinity-2b": "infinity_2b", "infinity-8b": "infinity_8b"},
            # (config, the scale schedule used for pn "1M", every command's default): the tiny model runs 0.06M
            random_models={
                "infinity-2b": ("infinity_2b", "1M"),
                "infinity-8b": ("infinity_8b", "1M"),
                "infinity-demo": (DEMO_INFINITY, "1M"),
                "infinity-tiny": ("tiny", "0.06M"),
            },
            aliases={},
            load=_infinity_load,
            sessions=_infinity_sessions,
            build_random=_infinity_build_random,
            check_size=_any_size,
            random_text_encoder=_flan_t5_xl,
            upstream_engine=True,
        ),
        Family(
            name="star",
            title="STAR",
            structure="blocks with cross_attn, head_logits",
            is_model=_is_star,
            official_call=star_official_call,
            default_unit="block",
            presets=STAR_PRESETS,
            default_cfg=STAR_CFG,
            text_encoder="CLIP",
            checkpoints={"star-d30": "star-d30-1024"},
            random_models={"star-d30": "star-d30-1024", "star-tiny": "tiny"},
            aliases={"star": "star-d30"},
            load=_star_load,
            sessions=_star_sessions,
            build_random=_star_build_random,
            check_size=_square_1024,
            random_text_encoder=_open_clip_h,
            upstream_engine=False,
        ),
    )
}


# ----------------------------------------------------------------------------------------------- lookups
def family(name: str) -> Family:
    """The family called ``name``; ``ValueError`` naming ``family`` otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"family: expected one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def family_of_model(model) -> Family:
    """The family of a model object (ours or the official class), by structure; ``ValueError`` naming ``model``."""
    for entry in FAMILIES.values():
        if entry.is_model(model):
            return entry
    known = " nor ".join(f"{f.title} ({f.structure})" for f in FAMILIES.values())
    raise ValueError(f"model: {type(model).__name__} is neither {known}")


def canonical(name: str) -> str:
    """``name`` with earlier spellings mapped to the current model names (``star`` is ``star-d30``)."""
    for entry in FAMILIES.values():
        if name in entry.aliases:
            return entry.aliases[name]
    return name


def random_model_names() -> tuple[str, ...]:
    """Every random-weight model name (:mod:`stagevar.zoo`), family by family."""
    return tuple(name for entry in FAMILIES.values() for name in entry.random_models)


def checkpoint_model_names() -> tuple[str, ...]:
    """Every model name with released checkpoints (``stagevar generate --model``)."""
    return tuple(name for entry in FAMILIES.values() for name in entry.checkpoints)


def family_of_name(name: str) -> Family:
    """The family of a model name (random-weight or checkpoint, aliases accepted); ``ValueError`` naming ``model``."""
    name = canonical(name)
    for entry in FAMILIES.values():
        if name in entry.random_models or name in entry.checkpoints:
            return entry
    known = sorted({*random_model_names(), *checkpoint_model_names()})
    raise ValueError(f"model: expected one of {known}, got {name!r}")
