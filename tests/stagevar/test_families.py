"""The family table: recognition of model objects, presets, names, and that everything else reads it."""

import dataclasses
import re
from pathlib import Path

import pytest
from torch import nn

import stagevar
from stagevar import cli, families, zoo
from stagevar.families import FAMILIES, family, family_of_model, family_of_name
from stagevar.models import infinity
from stagevar.models.star import official as star_official
from stagevar.schedule import presets


class _OfficialInfinityLike(nn.Module):
    """The attributes the official ``Infinity`` class has and ours share (no class of ours involved)."""

    def __init__(self):
        super().__init__()
        self.block_chunks = nn.ModuleList([nn.Identity()])
        self.text_proj_for_sos = nn.Linear(2, 2)
        self.head_nm = nn.Identity()


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.cross_attn = nn.Linear(2, 2)


class _OfficialVARLike(nn.Module):
    """The attributes of STAR's official ``VAR`` class: blocks with cross-attention and a logits head."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_Block()])
        self.head_logits = nn.Linear(2, 2)


def test_recognises_our_models_and_official_looking_objects():
    assert family_of_model(zoo.build("infinity-tiny").model) is FAMILIES["infinity"]
    assert family_of_model(zoo.build("star-tiny").model) is FAMILIES["star"]
    assert family_of_model(_OfficialInfinityLike()) is FAMILIES["infinity"]
    assert family_of_model(_OfficialVARLike()) is FAMILIES["star"]
    star_without_blocks = _OfficialVARLike()
    star_without_blocks.blocks = nn.ModuleList()
    for model in (nn.Linear(2, 2), star_without_blocks):
        with pytest.raises(ValueError, match=r"^model: \w+ is neither Infinity \(block_chunks.*nor STAR \(blocks"):
            family_of_model(model)


def test_official_entry_points_are_the_model_packages():
    assert FAMILIES["infinity"].official_call is infinity.official_call
    assert FAMILIES["star"].official_call is star_official.official_call


def test_presets_come_from_the_table_with_the_default_unit():
    assert (FAMILIES["infinity"].default_unit, FAMILIES["star"].default_unit) == ("chunk", "block")
    for name, entry in FAMILIES.items():
        table = presets(name)
        assert list(table) == list(entry.presets)
        assert all(s.unit == entry.default_unit and s.name == key for key, s in table.items())
    assert presets("infinity")["paper"].rank_ratios == (0.176, 0.0, 0.0)
    assert presets("star")["paper"].rank_ratios == (0.176,)
    assert presets("infinity")["paper-table7"].rank_ratios[0] == families.TABLE7_RANK_RATIOS
    with pytest.raises(ValueError, match="^model: expected one of \\['infinity', 'star'\\]"):
        presets("var")


def test_names_and_lookups():
    assert zoo.MODELS == families.random_model_names()
    assert set(families.checkpoint_model_names()) == {"infinity-2b", "infinity-8b", "star-d30"}
    assert set(families.checkpoint_model_names()) <= set(zoo.MODELS)  # every released model has a random twin
    assert family_of_name("star").name == "star" and family_of_name("infinity-demo").name == "infinity"
    assert [zoo.family_of(n) for n in ("infinity-tiny", "star-tiny", "star")] == ["infinity", "star", "star"]
    with pytest.raises(ValueError, match="^model: expected one of"):
        family_of_name("var-d16")
    with pytest.raises(ValueError, match="^family: expected one of \\['infinity', 'star'\\], got 'var'"):
        family("var")


def test_image_sizes_each_family_generates():
    FAMILIES["infinity"].check_size(0.5625, "0.25M")
    FAMILIES["star"].check_size(1.0, "1M")
    with pytest.raises(ValueError, match="^h_div_w/pn: STAR generates square 1024x1024"):
        FAMILIES["star"].check_size(0.5, "1M")


def test_random_sessions_use_the_family_guidance_default():
    built = zoo.build("star-tiny")
    assert built.new_session(batch=1).cfg == FAMILIES["star"].default_cfg


def _subcommand(name: str):
    """The argparse parser of subcommand ``name`` of a freshly built ``stagevar`` parser."""
    return cli.build_parser()._subparsers._group_actions[0].choices[name]


def _choices(command: str, dest: str):
    return next(a.choices for a in _subcommand(command)._actions if a.dest == dest)


def test_every_cli_model_choice_comes_from_the_table(monkeypatch):
    assert _choices("generate", "model") == sorted(families.checkpoint_model_names())
    assert list(_choices("bench", "model")) == list(zoo.MODELS)
    assert list(_choices("calibrate", "random")) == list(zoo.MODELS)
    # a third family's names reach the choices with no other change
    third = dataclasses.replace(
        FAMILIES["infinity"], name="third", title="Third", checkpoints={"third-1b": "c"}, random_models={}
    )
    monkeypatch.setitem(FAMILIES, "third", third)
    assert "third-1b" in _choices("generate", "model")
    assert "Third" in " ".join(a.help or "" for a in _subcommand("generate")._actions)  # --cfg, --text-encoder


def test_accelerate_reads_the_table(monkeypatch):
    # A family added to the table is recognised by accelerate and its entry point is the one called.
    calls = []

    def official_call(model, runner, *args, **kwargs):
        calls.append((args, kwargs))
        return "upstream's return value"

    class ThirdModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.third_marker = nn.Linear(2, 2)

    third = dataclasses.replace(
        FAMILIES["star"],
        name="third",
        title="Third",
        structure="third_marker",
        is_model=lambda m: hasattr(m, "third_marker"),
        official_call=official_call,
    )
    monkeypatch.setitem(FAMILIES, "third", third)
    model = ThirdModel()
    with stagevar.accelerated(model, "paper"):
        assert model.autoregressive_infer_cfg(7, cfg=2.0) == "upstream's return value"
        assert stagevar.patching.schedule_of(model).unit == "block"  # the presets of the entry's copy (STAR's)
    assert calls == [((7,), {"cfg": 2.0})]


def test_no_family_dispatch_outside_the_table():
    # Adding a family is one model package and one table entry: no other module branches on a family's name.
    root = Path(stagevar.__file__).parent
    pattern = re.compile(r"family\s*[!=]=|[!=]=\s*\"(infinity|star)\"|startswith\(\"(infinity|star|skipvar)")
    hits = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path.name != "families.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
