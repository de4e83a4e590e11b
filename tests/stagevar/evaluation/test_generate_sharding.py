"""``stagevar generate`` as one rank of two: its share of the prompt batches, the same seeds, resumable."""

import pytest

from stagevar import cli, zoo
from stagevar.evaluation import distributed


@pytest.fixture
def fake_model(monkeypatch):
    built = zoo.build("infinity-tiny")
    seen = []

    def fake_load(args, device):
        def encode(prompts):
            seen.append(list(prompts))
            return zoo.random_infinity_text(128, len(prompts), 0)

        return built.model, built.vae, encode

    monkeypatch.setattr(cli, "_load_model", fake_load)
    monkeypatch.setattr(cli, "_check_loading", lambda args, family: None)  # no checkpoint files in the test
    return seen


def _argv(out):
    argv = ["generate", "--checkpoint", "m", "--vae", "v", "--text-encoder", "t", "--pn", "0.06M", "--device", "cpu"]
    argv += ["--schedule", "skip-only"]
    return argv + ["--prompt", "a", "--prompt", "b", "--prompt", "c", "--batch-size", "2", "--out", str(out)]


def test_rank_one_of_two_writes_its_batches_and_resumes(tmp_path, monkeypatch, fake_model):
    out = tmp_path / "images"
    rank1 = distributed.Context(rank=1, world=2)
    rank1.barrier = lambda: None  # no process group in this test: rank 0 is not running
    monkeypatch.setattr(distributed, "init", lambda device: rank1)
    assert cli.main(_argv(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00002.png"]  # batches [a, b] and [c]: rank 1 has the second
    assert fake_model == [["c"]]
    single = tmp_path / "single"
    monkeypatch.setattr(distributed, "init", lambda device: distributed.Context(device=device))
    assert cli.main(_argv(single)) == 0
    assert (single / "00002.png").read_bytes() == (out / "00002.png").read_bytes()  # same seed whatever the rank
    fake_model.clear()
    (single / "00001.png").unlink()
    assert cli.main(_argv(single)) == 0
    assert fake_model == [["a", "b"]]  # only the unfinished batch runs again
    assert sorted(p.name for p in single.iterdir()) == ["00000.png", "00001.png", "00002.png"]
