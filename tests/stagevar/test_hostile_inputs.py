"""Hostile and malformed inputs: checkpoints, shard indexes and schedule files are refused with one clear error."""

import json
import os
import time
from pathlib import Path

import pytest
import torch

from stagevar.models.infinity import load_infinity, load_infinity_weights, read_state_dict, save_sharded
from stagevar.models.star import load_star, load_star_weights, load_vqvae_weights
from stagevar.models.star.loader import read_checkpoint
from stagevar.schedule import StageSchedule, resolve


# ----------------------------------------------------------------------------------------------- shard indexes
def _index(path: Path, weight_map) -> Path:
    path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


@pytest.fixture
def sharded(tmp_path):
    """A valid two-shard checkpoint folder and a foreign shard outside it."""
    state = {"a": torch.arange(4.0), "b": torch.ones(2, 2)}
    index = Path(save_sharded(state, str(tmp_path / "ckpt"), max_shard_bytes=16, safetensors=False))
    outside = tmp_path / "outside"
    outside.mkdir()
    torch.save({"a": torch.full((4,), 7.0)}, outside / "x.bin")
    return index, outside / "x.bin"


def test_valid_sharded_index_loads(sharded):
    index, _ = sharded
    sd = read_state_dict(index)  # a pathlib.Path
    assert torch.equal(sd["a"], torch.arange(4.0)) and torch.equal(sd["b"], torch.ones(2, 2))


@pytest.mark.parametrize("escape", ["../outside/x.bin", "absolute", "symlink"])
def test_shard_outside_the_folder_refused(sharded, escape):
    index, foreign = sharded
    name = {"../outside/x.bin": "../outside/x.bin", "absolute": str(foreign), "symlink": "link.bin"}[escape]
    if escape == "symlink":
        os.symlink(foreign, index.parent / "link.bin")
    _index(index, {"a": name})
    with pytest.raises(ValueError, match="shard"):
        read_state_dict(index)


def test_shard_that_is_a_fifo_or_proc_file_is_not_opened(sharded):
    index, _ = sharded
    os.mkfifo(index.parent / "fifo.bin")
    _index(index, {"a": "fifo.bin"})
    start = time.monotonic()
    with pytest.raises(ValueError, match="fifo.bin.*not a regular file"):
        read_state_dict(index)
    assert time.monotonic() - start < 10  # refused, not blocked reading the FIFO
    _index(index, {"a": "/proc/self/environ"})
    with pytest.raises(ValueError, match="environ"):
        read_state_dict(index)


@pytest.mark.parametrize(
    "content",
    [
        "{}",
        '{"weight_map": []}',
        '{"weight_map": {}}',
        '{"weight_map": {"a": 5}}',
        '{"weight_map": {"a": null}}',
        "[1, 2]",
        "not json",
        '{"weight_map": {"a": ""}}',
    ],
)
def test_malformed_index_is_a_value_error(tmp_path, content):
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="index.json"):
        read_state_dict(str(path))


def test_index_key_missing_from_its_shard(sharded):
    index, _ = sharded
    data = json.loads(index.read_text())
    data["weight_map"]["ghost"] = data["weight_map"]["a"]
    index.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="ghost"):
        read_state_dict(index)


# ----------------------------------------------------------------------------------------------- weight files
def _garbage_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.pth"
    torch.save({"w": torch.randn(64, 64)}, good)
    files = {
        "garbage.pth": b"\x00garbage bytes that are not a checkpoint\xff" * 2,
        "truncated.pth": good.read_bytes()[: good.stat().st_size // 2],
        "empty.pth": b"",
        "garbage.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}",
        "huge_header.safetensors": (1 << 40).to_bytes(8, "little") + b"{}",
    }
    out = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    return out


def test_garbage_and_truncated_weight_files_give_value_errors(tmp_path):
    pytest.importorskip("safetensors")
    for name, path in _garbage_files(tmp_path).items():
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            read_state_dict(path)
        if name.endswith(".pth"):
            with pytest.raises(ValueError, match=name.replace(".", r"\.")):
                read_checkpoint(path)


def test_non_tensor_checkpoint_refused(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"a": 1, "b": "text"}, path)
    with pytest.raises(ValueError, match="plain.pth"):
        load_infinity_weights(torch.nn.Linear(1, 1), path)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="VQ-VAE"):
        load_vqvae_weights(torch.nn.Linear(1, 1), tmp_path / "list.pth")


def test_directory_and_fifo_as_checkpoint_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.pth")
    for loader in (read_state_dict, read_checkpoint):
        with pytest.raises(ValueError, match="pipe.pth: not a regular file"):
            loader(tmp_path / "pipe.pth")
    with pytest.raises(ValueError, match="is a directory"):
        read_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="is a directory"):
        load_infinity("tiny", vae_path=tmp_path)


def test_bad_8b_checkpoint_fails_before_building_the_model(tmp_path):
    # built on the meta device: a garbage 8B checkpoint is refused in seconds, without 8B parameters of memory
    garbage, vae = tmp_path / "infinity_8b.pth", tmp_path / "vae.pth"
    garbage.write_bytes(b"0123456789" * 4)
    start = time.monotonic()
    with pytest.raises(ValueError, match="infinity_8b.pth"):
        load_infinity("infinity_8b", model_path=garbage)
    vae.write_bytes(b"x" * 40)
    with pytest.raises(ValueError, match="vae.pth"):
        load_infinity("infinity_8b", model_path=garbage, vae_path=vae)
    with pytest.raises(ValueError, match="vae.pth"):
        load_star(garbage, vae)
    assert time.monotonic() - start < 60


def test_star_garbage_and_pathlib(tmp_path):
    path = tmp_path / "STAR.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="STAR.pth: not a readable checkpoint"):
        load_star_weights(torch.nn.Linear(1, 1), path)


# ----------------------------------------------------------------------------------------------- schedule files
@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("[null]", "expected a JSON object"),
        ("5", "expected a JSON object"),
        ("null", "expected a JSON object"),
        ('"10"', "expected a JSON object"),
        ('{"rank_ratios": [null]}', r"rank_ratios\[0\]: expected a number"),
        ('{"rank_ratios": [true, false]}', r"rank_ratios\[0\]: expected a number, got bool"),
        ('{"rank_ratios": ["0.5"]}', r"rank_ratios\[0\]: expected a number, got str"),
        ('{"rank_ratios": "10"}', "rank_ratios: expected a list"),
        ('{"rank_ratios": 5}', "rank_ratios: expected a list"),
        ('{"rank_ratios": [[[0.5]]]}', r"rank_ratios\[0\]\[0\]: expected a number, got list"),
        ('{"rank_ratios": [{"a": 1}]}', r"rank_ratios\[0\]: expected a number, got dict"),
        ('{"rank_ratios": [0.2], "seed": "3"}', "seed: expected an int"),
        ('{"rank_ratios": [0.2], "seed": true}', "seed: expected an int"),
        ('{"rank_ratios": [0.2], "seed": 1.5}', "seed: expected an int"),
        ('{"rank_ratios": [0.2], "guidance": ["null"]}', "guidance: expected one of"),
        ('{"rank_ratios": [0.2], "name": 7}', "name: expected a string"),
        ('{"rank_ratios": [NaN]}', "not valid JSON"),
        ('{"rank_ratios": [1' + "0" * 400 + "]}", "not valid JSON.*digits"),
        ('{"rank_ratios": [0.2], "seed": 1' + "0" * 400 + "}", "not valid JSON.*digits"),
        ('{"rank_ratios": [1e400]}', r"rank_ratios\[0\]: ratios must lie in \[0, 1\]"),
        ("[" * 100_000 + "]" * 100_000, "nests deeper|not valid JSON"),
        ('{"rank_ratios": [[[[[[0.1]]]]]]}', "nests deeper"),
    ],
)
def test_schedule_file_refused_with_file_and_field(tmp_path, content, field):
    path = tmp_path / "sched.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"^schedule: .*sched.json.*{field}") as err:
        resolve(str(path))
    assert "\n" not in str(err.value)


def test_huge_schedule_file_refused_without_parsing(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(100 << 20)  # sparse: 100 MB without writing them
    start = time.monotonic()
    with pytest.raises(ValueError, match="big.json is larger than"):
        StageSchedule.load(path)
    assert time.monotonic() - start < 5


def test_schedule_fifo_and_directory(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(ValueError, match="pipe.json is not a regular file"):
        StageSchedule.load(tmp_path / "pipe.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ValueError, match="dir.json is not a regular file"):
        StageSchedule.load(tmp_path / "dir.json")


def test_schedule_constructor_is_strict_too():
    with pytest.raises(ValueError, match=r"rank_ratios\[0\]: expected a number"):
        StageSchedule(("0.5",))
    with pytest.raises(ValueError, match=r"rank_ratios\[1\]\[0\]: expected a number"):
        StageSchedule((0.5, (True,)))
    assert StageSchedule((1, 0)).rank_ratios == (1.0, 0.0)  # ints are numbers


def test_text_encoder_folders_that_hold_no_model(tmp_path):
    pytest.importorskip("transformers")
    from stagevar.models.infinity import load_t5
    from stagevar.models.star import load_clip_text_encoder

    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="t5: not a loadable flan-T5 folder"):
        load_t5(tmp_path / "t5", dtype=torch.float32)
    with pytest.raises(ValueError, match="is a folder"):
        load_t5(tmp_path / "t5" / "config.json")
    for sub in ("tokenizer", "text_encoder"):
        (tmp_path / "clip" / sub).mkdir(parents=True)
    with pytest.raises(ValueError, match="clip: not a loadable CLIP"):
        load_clip_text_encoder(tmp_path / "clip")
