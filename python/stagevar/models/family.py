"""What a model family declares about itself, so that the package can run it without naming it: one
:class:`Family` record, built by the family's package (``models/<family>/family.py``) and listed in the table of
:mod:`stagevar.families`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

PAPER_RANK_RATIO = 0.176  # alpha = 0.96 in the paper (Table 1), its chosen operating point for every family

Encode = Callable[[list[str]], object]  # prompts -> the family's text conditioning
SessionFactory = Callable[[list[str], list[int]], object]  # (prompts, seeds) -> a fresh GenerationSession


@dataclass(frozen=True, eq=False)
class Family:
    """One model family: everything the rest of the package does differently for it (built in its model package).

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
