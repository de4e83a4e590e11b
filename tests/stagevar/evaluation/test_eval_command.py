"""``stagevar eval`` end to end on a random-weight tiny Infinity: layouts, report, resume, errors."""

import json
from pathlib import Path

import pytest

from stagevar import cli

pytest.importorskip("torchmetrics")

DATA = Path(__file__).parent / "data"
BASE = ["eval", "--random", "infinity-tiny", "--device", "cpu", "--warmup", "0"]


def _png_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png")) if p.name != "grid.png"}


def test_geneval_layout_report_and_resume(tmp_path, capsys):
    out = tmp_path / "geneval"
    argv = BASE + ["--geneval-prompts", str(DATA / "geneval_sample.jsonl"), "--samples", "1"]
    argv += ["--schedules", "skipvar-skip3", "--out", str(out), "--grid-prompts", "1"]
    assert cli.main(argv) == 0
    assert "skipvar-skip3" in capsys.readouterr().out
    for schedule in ("vanilla", "skipvar-skip3"):  # vanilla is always run, as the reference
        folders = sorted(p.name for p in (out / schedule).iterdir())
        assert folders == ["00000", "00001", "00002"]
        assert (out / schedule / "00001" / "samples" / "0000.png").is_file()
        meta = json.loads((out / schedule / "00002" / "metadata.jsonl").read_text())
        assert meta["tag"] == "position" and meta["prompt"] == "a photo of a chair left of a lamp"
    report = json.loads((out / "eval.json").read_text())
    vanilla, skip = report["schedules"]["vanilla"], report["schedules"]["skipvar-skip3"]
    assert vanilla["identical_to_vanilla"] == 3 and vanilla["ssim"] == pytest.approx(1.0) and vanilla["psnr"] is None
    assert skip["identical_to_vanilla"] == 0 and 0 < skip["psnr"] < 60 and skip["ssim"] < 1
    assert skip["low_mse"] + skip["high_mse"] > 0 and skip["timed_generations"] == 3 and skip["speedup"] > 0
    assert [r["seed"] for r in report["images"] if r["schedule"] == "vanilla"] == [0, 1, 2]
    assert (out / "eval.txt").read_text().splitlines()[1].split()[:2] == ["schedule", "ms"]
    from PIL import Image

    assert Image.open(out / "grid.png").size == (3 * 256, 256 + 14)

    # Resume: nothing to generate, the same figures from the images on disk.
    before = _png_bytes(out)
    assert cli.main(argv) == 0
    again = json.loads((out / "eval.json").read_text())
    assert again["images"] == report["images"]
    assert all(e["timed_generations"] == 0 and e["latency_ms"] is None for e in again["schedules"].values())
    # A lost file is generated again, bit for bit, and nothing else is.
    (out / "skipvar-skip3" / "00001" / "samples" / "0000.png").unlink()
    assert cli.main(argv) == 0
    third = json.loads((out / "eval.json").read_text())
    assert third["schedules"]["skipvar-skip3"]["timed_generations"] == 1
    assert third["schedules"]["vanilla"]["timed_generations"] == 0
    assert _png_bytes(out) == before


def test_dpg_layout_grid_of_four_with_clip_scores(tmp_path, tiny_clip):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "5.txt").write_text((DATA / "dpg_prompts" / "7.txt").read_text())
    out = tmp_path / "dpg"
    argv = BASE + ["--dpg-prompts", str(prompts), "--batch-size", "4", "--schedules", "vanilla,skipvar-skip3"]
    assert cli.main(argv + ["--out", str(out), "--grid-prompts", "0", "--clip", str(tiny_clip)]) == 0
    for schedule in ("vanilla", "skipvar-skip3"):
        assert [p.name for p in (out / schedule).iterdir()] == ["5.png"]  # the evaluator reads every file
    from PIL import Image

    assert Image.open(out / "vanilla" / "5.png").size == (128, 128)  # 2x2 grid of 64x64 samples
    report = json.loads((out / "eval.json").read_text())
    assert report["samples"] == 4 and [r["seed"] for r in report["images"] if r["schedule"] == "vanilla"] == [
        0,
        1,
        2,
        3,
    ]
    assert report["schedules"]["vanilla"]["timed_generations"] == 1  # the 4 samples as one batch
    assert not (out / "grid.png").exists()
    assert all(0 <= r["clip"] <= 100 for r in report["images"]) and len(report["images"]) == 8
    mean = sum(r["clip"] for r in report["images"][:4] if r["schedule"] == "vanilla") / 4
    assert report["schedules"]["vanilla"]["clip"] == pytest.approx(mean)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--prompt", "x", "--schedules", "warp-speed"], "schedule"),
        (["--prompt", "x", "--dpg-prompts", str(DATA / "dpg_prompts")], "prompts: give one source"),
        (["--prompt", "x", "--samples", "0"], "samples"),
        (["--prompt", "x", "--warmup", "-1"], "--warmup"),
        (["--dpg-prompts", str(DATA / "dpg_prompts"), "--samples", "3"], "samples: DPG-Bench"),
    ],
)
def test_eval_errors_are_one_line_with_status_2(extra, needle, tmp_path, capsys):
    assert cli.main(BASE + extra + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stagevar: error: ") and needle in err and "\n" not in err


def test_eval_needs_a_model(tmp_path, capsys):
    assert cli.main(["eval", "--prompt", "x", "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "--random" in capsys.readouterr().err
