"""The stagevar command line, end to end on the embedded defaults, and its error handling."""

import json
import os
import subprocess
import sys

import pytest
import torch

from stagevar import cli, families
from stagevar.schedule import StageSchedule


def test_demo_command_small_model(tmp_path):
    # The README's `stagevar demo` in a subprocess, on the seconds-long infinity-tiny (same code as infinity-demo).
    png = tmp_path / "out" / "demo.png"
    done = subprocess.run(
        [sys.executable, "-m", "stagevar", "demo", "--model", "infinity-tiny", "--repeats", "2", "--out", str(png)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "RANDOM weights" in done.stdout and "speedup of the paper schedule over vanilla" in done.stdout
    assert "1 warm-up + 2 timed runs" in done.stdout and "medians of 2 runs after 1 warm-up" in done.stdout
    assert "skipped" in done.stdout and "r=11 (17.6%)" in done.stdout
    from PIL import Image

    image = Image.open(png)
    assert image.size == (2 * 64 + 16, 64 + 28)  # two 64x64 panels under a caption band
    assert image.crop((0, 0, 60, 28)).convert("L").getextrema()[0] < 128  # the caption is drawn


def test_demo_defaults_are_the_readme_run():
    args = cli.build_parser().parse_args(["demo"])
    assert (args.model, args.repeats, args.warmup, args.device) == ("infinity-demo", 3, 1, "cpu")


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
    monkeypatch.setitem(families.FAMILIES["infinity"].checkpoints, "infinity-tiny", "tiny")
    monkeypatch.setattr(infinity.family, "load_t5", lambda path, device, dtype: (None, None))
    encoded = []

    def fake_encode(tok, enc, prompts):
        encoded.append(list(prompts))
        return zoo.random_infinity_text(128, len(prompts), 0)

    monkeypatch.setattr(infinity.family, "encode_prompts", fake_encode)
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
def test_bad_arguments_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stagevar: error: ") and "\n" not in err


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

    monkeypatch.setitem(families.FAMILIES["star"].checkpoints, "star-tiny", "tiny")
    monkeypatch.setattr(star.family, "load_clip_text_encoder", lambda path, device: FakeClip())
    out = tmp_path / "images"
    base = ["generate", "--model", "star-tiny", "--checkpoint", str(ckpt), "--vae", str(vae_ckpt)]
    base += ["--text-encoder", str(clip), "--prompt", "a"]
    code = cli.main(
        base
        + ["--prompt", "b", "--batch-size", "2", "--out", str(out), "--device", "cpu", "--negative-prompt", "blurry"]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png"]
    assert cli.main(base + ["--aspect-ratio", "2.0"]) == 2  # STAR draws square images only


def test_calibrate_star_random_model(tmp_path):
    out = tmp_path / "star.json"
    assert cli.main(["calibrate", "--random", "star-tiny", "--runs", "1", "--out", str(out)]) == 0
    schedule = StageSchedule.load(out)
    assert schedule.unit == "block" and len(schedule.rank_ratios) == 1 and len(schedule.rank_ratios[0]) == 2


# ----------------------------------------------------------------------------------------------- exit statuses
def _fail_if_built(monkeypatch):
    """Any model build, load or generation fails the test: the error must come before the work."""
    from stagevar import benchmark, zoo
    from stagevar.models import infinity, star

    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    for module, name in (
        (zoo, "build"),
        (benchmark, "run"),
        (infinity.family, "load_infinity"),
        (star.family, "load_star"),
    ):
        monkeypatch.setattr(module, name, boom)


@pytest.fixture
def files(tmp_path):
    """A garbage and a truncated checkpoint, a text-encoder folder, and a file where a folder is expected."""
    garbage, truncated, good = tmp_path / "garbage.pth", tmp_path / "trunc.pth", tmp_path / "good.pth"
    garbage.write_bytes(b"\x00not a checkpoint at all\xff" * 2)
    torch.save({"w": torch.randn(32, 32)}, good)
    truncated.write_bytes(good.read_bytes()[:300])
    (tmp_path / "t5").mkdir()
    (tmp_path / "afile").write_text("x")
    return tmp_path


def _generate(files, *extra):
    return [
        "generate",
        "--checkpoint",
        str(files / "good.pth"),
        "--vae",
        str(files / "good.pth"),
        "--text-encoder",
        str(files / "t5"),
        "--prompt",
        "x",
        "--out",
        str(files / "out"),
        "--device",
        "cpu",
        *extra,
    ]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("stagevar: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--device", "bogus"], "--device"),
        (["--tau", "0"], "--tau"),
        (["--tau", "-1"], "--tau"),
        (["--cfg", "nan"], "--cfg"),
        (["--cfg", "inf"], "--cfg"),
        (["--aspect-ratio", "-1"], "--aspect-ratio"),
        (["--aspect-ratio", "0"], "--aspect-ratio"),
        (["--aspect-ratio", "nan"], "--aspect-ratio"),
        (["--aspect-ratio", "inf"], "--aspect-ratio"),
        (["--aspect-ratio", "1000"], "--aspect-ratio"),
        (["--aspect-ratio", "16:0"], "--aspect-ratio"),
        (["--batch-size", "0"], "--batch-size"),
        (["--seed", "-1"], "--seed"),
        (["--schedule", "warp-speed"], "--schedule"),
        (["--prompts-file", "."], "--prompts-file"),
        (["--prompts-file", "/nonexistent/prompts.txt"], "--prompts-file"),
        (["--vae", "."], "--vae"),
        (["--text-encoder", "afile"], "--text-encoder"),
        (["--out", "afile"], "--out"),
        (["--out", "afile/sub"], "--out"),
        (["--model", "star", "--pn", "0.06M"], "STAR generates square"),
        (["--model", "star-d30", "--aspect-ratio", "16:9"], "STAR generates square"),
        (["--backend", "cuda"], "--backend cuda"),
    ],
)
def test_generate_usage_errors_before_any_work(files, extra, needle, capsys, monkeypatch):
    monkeypatch.chdir(files)
    _fail_if_built(monkeypatch)
    assert cli.main(_generate(files, *extra)) == 2
    assert needle in _one_error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["generate", "bench", "demo"])
def test_device_cuda_without_cuda(files, command, capsys, monkeypatch):
    _fail_if_built(monkeypatch)
    argv = _generate(files) if command == "generate" else [command]
    assert cli.main(argv + ["--device", "cuda"]) == 2
    assert "CUDA is not available" in _one_error_line(capsys)


@pytest.mark.parametrize("command", ["generate", "bench"])
def test_cuda_graphs_on_cpu_is_a_usage_error(files, command, capsys, monkeypatch):
    _fail_if_built(monkeypatch)
    argv = _generate(files) if command == "generate" else ["bench", "--model", "infinity-tiny", "--device", "cpu"]
    assert cli.main(argv + ["--cuda-graphs"]) == 2
    assert _one_error_line(capsys).startswith("stagevar: error: --cuda-graphs: CUDA graphs need a CUDA device")


def test_cuda_graphs_is_listed_where_the_gpu_check_looks(capsys):
    # scripts/gpu_check.py passes --cuda-graphs to `stagevar bench` when its --help lists the flag
    for command in ("bench", "generate"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([command, "--help"])
        assert "--cuda-graphs" in capsys.readouterr().out
    assert cli.build_parser().parse_args(["bench", "--cuda-graphs"]).cuda_graphs is True
    assert cli.build_parser().parse_args(["bench"]).cuda_graphs is False


def test_missing_transformers_is_a_usage_error(files, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name))
    _fail_if_built(monkeypatch)
    assert cli.main(_generate(files)) == 2
    assert "transformers" in _one_error_line(capsys)


@pytest.mark.parametrize("bad", ["garbage.pth", "trunc.pth"])
def test_corrupt_checkpoint_is_one_line(files, bad, capsys):
    argv = _generate(files, "--checkpoint", str(files / bad), "--vae", str(files / bad), "--model", "infinity-8b")
    assert cli.main(argv) == 2
    assert f"{bad}: not a readable checkpoint" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--repeats", "0"],
        ["bench", "--warmup", "-1"],
        ["bench", "--schedules", ""],
        ["bench", "--schedules", " , "],
        ["bench", "--schedules", "vanilla,warp-speed"],
        ["bench", "--model", "infinity-tiny", "--json", "afile/x.json"],
        ["bench", "--model", "infinity-2b", "--device", "cpu"],
        ["bench", "--model", "star", "--device", "cpu"],
        ["bench", "--model", "star-tiny", "--pn", "0.25M"],
        ["demo", "--repeats", "0"],
        ["demo", "--warmup", "-1"],
        ["demo", "--out", "afile/demo.png"],
        ["demo", "--out", "."],
        ["demo", "--model", "infinity-2b"],
        ["calibrate", "--random", "infinity-tiny", "--runs", "0"],
        ["calibrate", "--random", "infinity-tiny", "--out", "afile/s.json"],
        ["calibrate", "--random", "infinity-tiny", "--schedule", "vanilla"],
        ["calibrate", "--random", "star", "--schedule", "nope.json"],
        ["calibrate", "--random", "infinity-tiny", "--alpha", "0"],
    ],
)
def test_usage_errors_before_any_work(files, argv, capsys, monkeypatch):
    monkeypatch.chdir(files)
    _fail_if_built(monkeypatch)
    assert cli.main(argv) == 2
    _one_error_line(capsys)


def test_bench_refuses_large_models_on_cpu_unless_forced(monkeypatch, capsys):
    from stagevar import benchmark

    assert cli.main(["bench", "--model", "infinity-8b", "--device", "cpu"]) == 2
    assert "--force" in _one_error_line(capsys)
    seen = {}

    def fake_run(model, schedules, **kw):
        seen["model"] = model
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "run", fake_run)
    assert cli.main(["bench", "--model", "infinity-8b", "--device", "cpu", "--force"]) == 130
    assert seen["model"] == "infinity-8b"
    assert cli.main(["bench", "--device", "cpu"]) == 130  # Ctrl-C: status 130, no traceback
    assert seen["model"] == "infinity-demo"  # the default that fits a CPU
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err


def test_runtime_failure_is_one_line_with_status_1(monkeypatch, capsys):
    from stagevar import benchmark

    def oom(*a, **k):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(benchmark, "run", oom)
    assert cli.main(["bench", "--model", "infinity-tiny", "--device", "cpu"]) == 1
    assert "RuntimeError: CUDA out of memory.; Tried to allocate" in _one_error_line(capsys)


def test_version_env_and_help_defaults(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("stagevar 0.")
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch " in out and "ops backends:" in out and "reference: available" in out and "cuda" in out
    assert cli.main(["bench", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 10)" in help_text and "(default: vanilla,paper,skip-only,cfg-drop-only)" in help_text


def test_one_model_name_everywhere():
    parser = cli.build_parser()
    names = {
        "generate": parser.parse_args(
            ["generate", "--model", "star", "--checkpoint", "c", "--vae", "v"] + ["--text-encoder", "t"]
        ).model,
        "bench": parser.parse_args(["bench", "--model", "star"]).model,
        "calibrate": parser.parse_args(["calibrate", "--random", "star"]).random,
    }
    assert set(names.values()) == {"star-d30"}


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), ("0.5625", 0.5625), ("9:16", 0.5625), ("3:1", 3.0)])
def test_aspect_ratio_parsing(text, value):
    assert cli.aspect_ratio(text) == pytest.approx(value)


def test_atomic_output_keeps_the_old_file_on_failure(tmp_path):
    from stagevar.atomic import atomic_path

    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise OSError("No space left on device")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
