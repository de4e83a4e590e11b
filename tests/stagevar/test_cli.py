"""The stagevar command line, end to end on the embedded defaults, and its error handling."""

import json
import subprocess
import sys

import pytest
import torch

from stagevar import cli
from stagevar.schedule import StageSchedule


def test_demo_readme_command(tmp_path):
    # The README's main job, as a user runs it (the console script is `stagevar`; this is the same entry point).
    png = tmp_path / "demo.png"
    done = subprocess.run(
        [sys.executable, "-m", "stagevar", "demo", "--out", str(png)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "RANDOM weights" in done.stdout and "speedup of the paper schedule over vanilla" in done.stdout
    assert "skipped" in done.stdout and "r=282 (17.6%)" in done.stdout
    from PIL import Image

    assert Image.open(png).size == (2 * 1024 + 16, 1024)


def test_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = cli.main(
        [
            "bench",
            "--model",
            "infinity-tiny",
            "--device",
            "cpu",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--schedules",
            "vanilla,paper",
            "--no-text-encoder",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["schedules"]) == {"vanilla", "paper"} and len(result["scales"]) == 7
    assert "scale6" in result["schedules"]["vanilla"]["ms"] and "scale6" not in result["schedules"]["paper"]["ms"]
    assert result["schedules"]["paper"]["op_ms"] > 0 and result["schedules"]["vanilla"]["op_ms"] == 0
    assert "speedup" in capsys.readouterr().out


def test_calibrate_random_model(tmp_path):
    out = tmp_path / "s.json"
    assert cli.main(["calibrate", "--random", "infinity-tiny", "--runs", "1", "--out", str(out)]) == 0
    schedule = StageSchedule.load(out)
    assert isinstance(schedule.rank_ratios[0], tuple) and schedule.rank_ratios[1:] == (0.0, 0.0)


def test_generate_with_local_checkpoints(tmp_path, monkeypatch):
    # Real loaders on tiny checkpoints written here; the T5 encoder is replaced by random features.
    from stagevar import zoo
    from stagevar.models import infinity

    built = zoo.build("infinity-tiny")
    ckpt, vae_ckpt, t5 = tmp_path / "m.pth", tmp_path / "vae.pth", tmp_path / "t5"
    torch.save(built.model.state_dict(), ckpt)
    torch.save({"vae": built.vae.state_dict()}, vae_ckpt)
    t5.mkdir()
    monkeypatch.setitem(cli.FAMILY_MODELS, "infinity-tiny", ("infinity", "tiny"))
    monkeypatch.setattr(infinity, "load_t5", lambda path, device, dtype: (None, None))
    encoded = []

    def fake_encode(tok, enc, prompts):
        encoded.append(list(prompts))
        return zoo.random_infinity_text(128, len(prompts), 0)

    monkeypatch.setattr(infinity, "encode_prompts", fake_encode)
    out = tmp_path / "images"
    code = cli.main(
        [
            "generate",
            "--model",
            "infinity-tiny",
            "--checkpoint",
            str(ckpt),
            "--vae",
            str(vae_ckpt),
            "--text-encoder",
            str(t5),
            "--prompt",
            "a",
            "--prompt",
            "b",
            "--prompt",
            "c",
            "--batch-size",
            "2",
            "--pn",
            "0.06M",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--negative-prompt",
            "blurry",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert encoded == [["blurry"], ["a", "b"], ["c"]]  # the negative prompt once, then the prompt batches


@pytest.mark.parametrize(
    "argv,needle",
    [
        (
            ["generate", "--checkpoint", "/nope.pth", "--vae", "/nope", "--text-encoder", "/nope", "--prompt", "x"],
            "checkpoint not found: /nope.pth",
        ),
        (["calibrate", "--random", "infinity-tiny", "--alpha", "2", "--runs", "1"], "alpha"),
        (
            ["bench", "--model", "infinity-tiny", "--schedules", "warp-speed", "--repeats", "1", "--warmup", "0"],
            "schedule",
        ),
    ],
)
def test_errors_are_one_line_with_status_2(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stagevar: error: ") and needle in err and "\n" not in err


@pytest.mark.parametrize(
    "argv", [["frobnicate"], ["generate", "--prompt", "x"], ["calibrate"], ["demo", "--repeats", "x"]]
)
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2


def test_generate_star_with_local_checkpoints(tmp_path, monkeypatch):
    from stagevar import zoo
    from stagevar.models import star

    built = zoo.build("star-tiny")
    ckpt, vae_ckpt, clip = tmp_path / "star.pth", tmp_path / "vae.pth", tmp_path / "clip"
    torch.save({"trainer": {"var_wo_ddp": built.model.state_dict()}}, ckpt)  # the official nesting
    torch.save(built.vae.state_dict(), vae_ckpt)
    clip.mkdir()
    width = built.model.blocks[0].cross_attn.mat_kv.weight.shape[1]

    class FakeClip:
        def encode(self, prompts):  # the prompts, then as many null (or negative) prompts
            assert prompts[len(prompts) // 2 :] == ["blurry"] * (len(prompts) // 2)
            return zoo.random_star_text(len(prompts) // 2, 0, width)

    monkeypatch.setitem(cli.FAMILY_MODELS, "star-tiny", ("star", "tiny"))
    monkeypatch.setattr(star, "load_clip_text_encoder", lambda path, device: FakeClip())
    out = tmp_path / "images"
    base = ["generate", "--model", "star-tiny", "--checkpoint", str(ckpt), "--vae", str(vae_ckpt)]
    base += ["--text-encoder", str(clip), "--prompt", "a"]
    code = cli.main(
        base
        + ["--prompt", "b", "--batch-size", "2", "--out", str(out), "--device", "cpu", "--negative-prompt", "blurry"]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png"]
    with pytest.raises(SystemExit) as info:  # STAR draws square images only
        cli.main(base + ["--aspect-ratio", "2.0"])
    assert info.value.code == 2


def test_calibrate_star_random_model(tmp_path):
    out = tmp_path / "star.json"
    assert cli.main(["calibrate", "--random", "star-tiny", "--runs", "1", "--out", str(out)]) == 0
    schedule = StageSchedule.load(out)
    assert schedule.unit == "block" and len(schedule.rank_ratios) == 1 and len(schedule.rank_ratios[0]) == 2
