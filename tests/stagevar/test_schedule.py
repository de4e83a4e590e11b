"""StageSchedule: validation, planning over any schedule length, presets, JSON round trip."""

import json

import pytest

from stagevar.schedule import StageSchedule, presets, resolve


def test_paper_preset_plans_the_last_three_steps():
    paper = presets("infinity")["paper"]
    plan = paper.plan(num_scales=13, num_units=8)
    assert [s.mode for s in plan[:10]] == ["full"] * 10
    assert all(s.guidance == "cfg" for s in plan[:10])
    assert plan[10].mode == "reduced" and plan[10].guidance == "null" and plan[10].ratios == (0.176,) * 8
    assert [s.mode for s in plan[11:]] == ["skip", "skip"]


@pytest.mark.parametrize("num_scales", [7, 10, 12, 13, 14])
def test_every_schedule_length_gets_a_plan(num_scales):
    for name, schedule in presets("infinity").items():
        units = 8 if name == "paper-table7" else 4  # written for Infinity's 8 chunks
        plan = schedule.plan(num_scales, units)
        assert len(plan) == num_scales, name


def test_table7_preset_averages_to_the_uniform_ratio():
    table7 = presets("infinity")["paper-table7"]
    plan = table7.plan(13, 8)
    assert plan[10].mode == "reduced" and plan[10].guidance == "null" and len(plan[10].ratios) == 8
    assert sum(plan[10].ratios) / 8 == pytest.approx(0.176, abs=0.002)
    assert [s.mode for s in plan[11:]] == ["skip", "skip"]


def test_star_paper_preset_is_last_step_per_block():
    paper = presets("star")["paper"]
    plan = paper.plan(14, 30)
    assert paper.unit == "block"
    assert plan[-1].mode == "reduced" and plan[-1].ratios == (0.176,) * 30 and plan[-1].guidance == "null"
    assert all(s.mode == "full" for s in plan[:-1])


def test_vanilla_and_variants():
    table = presets("infinity")
    assert table["vanilla"].is_vanilla
    assert not table["paper"].is_vanilla
    skip = table["skip-only"].plan(13, 8)
    assert [s.mode for s in skip[10:]] == ["full", "skip", "skip"] and skip[10].guidance == "cfg"
    drop = table["cfg-drop-only"].plan(13, 8)
    assert [s.mode for s in drop[10:]] == ["full"] * 3 and all(s.guidance == "null" for s in drop[10:])


def test_per_unit_ratios():
    s = StageSchedule(((0.1, 0.2, 0.3), 0.0), guidance="null")
    plan = s.plan(5, 3)
    assert plan[3].ratios == (0.1, 0.2, 0.3) and plan[4].mode == "skip"
    with pytest.raises(ValueError, match="^rank_ratios: per-unit list of 3 ratios for a model with 4 units"):
        s.plan(5, 4)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"rank_ratios": (1.5,)}, "rank_ratios"),
        ({"rank_ratios": (-0.1,)}, "rank_ratios"),
        ({"rank_ratios": (0.0, 0.5)}, "rank_ratios"),
        ({"rank_ratios": ((0.0, 0.5),)}, "rank_ratios"),
        ({"rank_ratios": (0.5,), "projection": "none"}, "rank_ratios"),
        ({"guidance": "uncond"}, "guidance"),
        ({"unit": "layer"}, "unit"),
        ({"restore_mode": "trilinear"}, "restore_mode"),
        ({"projection": "pca"}, "projection"),
        ({"restoration": "svd"}, "restoration"),
        ({"seed": -1}, "seed"),
    ],
)
def test_validation_names_the_field(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        StageSchedule(**kwargs)


def test_plan_rejects_a_reduced_first_step_and_too_many_steps():
    with pytest.raises(ValueError, match="^rank_ratios: the first scale step"):
        StageSchedule((0.5, 0.5)).plan(2, 1)
    with pytest.raises(ValueError, match="^rank_ratios: 3 fidelity steps"):
        StageSchedule((0.5, 0.0, 0.0)).plan(2, 1)


def test_json_round_trip(tmp_path):
    s = StageSchedule(((0.1, 0.25), 0.0), guidance="cond", unit="block", restore_mode="bicubic", seed=9, name="x")
    path = tmp_path / "s.json"
    s.save(path)
    assert json.loads(path.read_text())["rank_ratios"] == [[0.1, 0.25], 0.0]
    back = StageSchedule.load(path)
    assert back == s and back.name == "x"
    assert resolve(str(path)) == s


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        StageSchedule.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="^schedule: .*not valid JSON"):
        StageSchedule.load(bad)
    bad.write_text(json.dumps({"rank_ratios": [0.2], "colour": "red"}))
    with pytest.raises(ValueError, match="^schedule: .*bad.json: unknown keys \\['colour'\\]"):
        StageSchedule.load(bad)
    with pytest.raises(ValueError, match="^schedule: expected a preset"):
        resolve("fastest")
    with pytest.raises(ValueError, match="^model: "):
        presets("var")
