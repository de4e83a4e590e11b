"""Prompt sources (GenEval JSONL, DPG-Bench folder, plain text), evaluator layouts and the sharding helpers."""

import json
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from stagevar.evaluation import distributed, layouts, prompts

DATA = Path(__file__).parent / "data"


def test_geneval_records_keep_their_metadata():
    records = prompts.read_geneval(DATA / "geneval_sample.jsonl")
    assert [r.index for r in records] == [0, 1, 2]
    assert records[1].prompt == "a photo of a green kite and a yellow boat"
    assert records[1].metadata["tag"] == "color_attr" and records[1].key == "00001"


def test_dpg_records_are_ordered_by_numeric_id_and_keep_the_id():
    records = prompts.read_dpg(DATA / "dpg_prompts")
    assert [r.key for r in records] == ["2", "7", "10"]
    assert [r.index for r in records] == [0, 1, 2]
    assert records[1].prompt == "An old bicycle leans against a brick wall covered in ivy."  # whitespace joined


def test_sources_reject_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match="^--geneval-prompts: line 2"):
        prompts.read_geneval(bad)
    bad.write_text('{"tag": "x"}\n')
    with pytest.raises(ValueError, match='^--geneval-prompts: line 1 .* no "prompt"'):
        prompts.read_geneval(bad)
    with pytest.raises(FileNotFoundError, match="--dpg-prompts folder not found"):
        prompts.read_dpg(tmp_path / "nope")
    with pytest.raises(ValueError, match="^--dpg-prompts: no .txt"):
        prompts.read_dpg(tmp_path)
    two = Namespace(geneval_prompts=str(DATA / "geneval_sample.jsonl"), dpg_prompts=None, prompt=["x"])
    with pytest.raises(ValueError, match="^prompts: give one source"):
        prompts.from_args(two)
    with pytest.raises(ValueError, match="^prompts: give"):
        prompts.from_args(Namespace(prompt=None, prompts_file=None))


def test_from_args_plain_prompts(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("first\n\n  second  \n")
    records, kind = prompts.from_args(Namespace(prompt=["zero"], prompts_file=str(f)))
    assert kind == "plain" and [r.prompt for r in records] == ["zero", "first", "second"]
    assert [r.index for r in records] == [0, 1, 2]


def _samples(n, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)


def test_geneval_layout_round_trip(tmp_path):
    record = prompts.read_geneval(DATA / "geneval_sample.jsonl")[2]
    layout = layouts.Layout(tmp_path, "geneval", 2)
    assert not layout.complete(record, "paper")
    images = _samples(2)
    layout.write(record, "paper", images)
    folder = tmp_path / "paper" / "00002"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "metadata.jsonl",
        "samples",
        "samples/0000.png",
        "samples/0001.png",
    ]
    assert json.loads((folder / "metadata.jsonl").read_text()) == record.metadata  # what the evaluator reads
    assert layout.complete(record, "paper") and torch.equal(layout.read(record, "paper"), images)


def test_dpg_layout_writes_a_row_major_grid_only(tmp_path):
    record = prompts.read_dpg(DATA / "dpg_prompts")[2]
    layout = layouts.Layout(tmp_path, "dpg", 4)
    images = _samples(4)
    layout.write(record, "my_schedule.json", images)
    assert [p.name for p in (tmp_path / "my_schedule").iterdir()] == ["10.png"]  # nothing else in the folder
    grid = layouts.load_png(tmp_path / "my_schedule" / "10.png")
    assert grid.shape == (16, 16, 3)
    # compute_dpg_bench crops (0,0), (res,0), (0,res), (res,res) as (left, top): samples 0, 1, 2, 3
    assert torch.equal(grid[:8, 8:], images[1]) and torch.equal(grid[8:, :8], images[2])
    assert torch.equal(layout.read(record, "my_schedule.json"), images)
    with pytest.raises(ValueError, match="^samples: DPG-Bench"):
        layouts.Layout(tmp_path, "dpg", 2)


def test_plain_layout_names(tmp_path):
    record = prompts.from_strings(["a", "b"])[1]
    assert [p.name for p in layouts.Layout(tmp_path, "plain", 1).paths(record, "x")] == ["00001.png"]
    assert [p.name for p in layouts.Layout(tmp_path, "plain", 2).paths(record, "x")] == ["00001_00.png", "00001_01.png"]


def test_atomic_writes_leave_no_temporary_files(tmp_path, monkeypatch):
    layouts.save_png(_samples(1)[0], tmp_path / "a.png")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(layouts.os, "replace", fail)
    with pytest.raises(OSError):
        layouts.save_png(_samples(1)[0], tmp_path / "b.png")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # neither b.png nor a temporary file
    with pytest.raises(ValueError, match="^image"):
        layouts.save_png(torch.zeros(4, 4, 3), tmp_path / "c.png")


def test_shards_cover_every_job_once_and_generate_skips_finished_batches(tmp_path):
    jobs = list(range(7))
    shards = [distributed.Context(rank=r, world=3).shard(jobs) for r in range(3)]
    assert sorted(j for s in shards for j in s) == jobs and shards[1] == [1, 4]
    batches = [(0, ["a", "b"]), (2, ["c", "d"]), (4, ["e"])]
    (tmp_path / "00002.png").write_bytes(b"x")
    (tmp_path / "00003.png").write_bytes(b"x")
    (tmp_path / "00000.png").write_bytes(b"x")  # batch 0 only half done
    rank0 = distributed.generate_jobs(distributed.Context(rank=0, world=2), batches, tmp_path)
    rank1 = distributed.generate_jobs(distributed.Context(rank=1, world=2), batches, tmp_path)
    assert rank0 == [(0, ["a", "b"]), (4, ["e"])] and rank1 == []


def test_init_without_torchrun_is_a_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.init("cpu")
    assert (ctx.rank, ctx.world, ctx.device, ctx.is_main) == (0, 1, "cpu", True)
    assert ctx.gather({"x": 1}) == [{"x": 1}]
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="^WORLD_SIZE"):
        distributed.init("cpu")


def test_missing_torchmetrics_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    from stagevar import cli
    from stagevar.evaluation import metrics

    monkeypatch.setitem(sys.modules, "torchmetrics.functional.image", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'stagevar-kernels\[eval\]'"):
        metrics.psnr(_samples(1), _samples(1))
    argv = ["eval", "--random", "infinity-tiny", "--prompt", "x", "--out", str(tmp_path), "--device", "cpu"]
    assert cli.main(argv) == 2
    assert "needs torchmetrics" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # it failed before generating anything
