"""The calibration report: stability flags (std vs mean), the JSON table, and ``stagevar calibrate`` on the
benchmark prompt sources."""

import json
from pathlib import Path

import pytest

from stagevar import cli, presets, zoo
from stagevar.calibration import Calibration

DATA = Path(__file__).parent / "data"


def _calibration():
    result = Calibration(alpha=0.96, base=presets("infinity")["paper"])
    result.samples[(0, 0)] = [0.100, 0.101, 0.099]  # std 0.0008: an order of magnitude below the mean
    result.samples[(0, 1)] = [0.1, 0.2, 0.3]  # std 0.08 of mean 0.2: not
    result.grids[0] = (8, 8)
    return result


def test_table_flags_entries_whose_std_is_not_small():
    result = _calibration()
    assert result.stable(0, 0) and not result.stable(0, 1) and result.unstable() == [(0, 1)]
    lines = result.table().splitlines()
    assert lines[0].split()[-1] == "8x8"
    assert not lines[1].endswith("!") and lines[2].endswith("!")
    assert lines[-1].startswith("! std not an order of magnitude below the mean in 1 of 2 entries (3 samples each)")
    result.samples[(0, 1)] = [0.2, 0.2, 0.2]
    assert result.table().splitlines()[-1].startswith("std below a tenth of the mean in all 2 entries")


def test_table_json(tmp_path):
    result = _calibration()
    path = tmp_path / "t.json"
    result.save_table(path)
    data = json.loads(path.read_text())
    assert data["alpha"] == 0.96 and data["units"] == 2 and data["grids"] == [[8, 8]] and not data["all_stable"]
    first, second = data["entries"]
    assert (first["unit"], first["stable"], second["stable"]) == (0, True, False)
    assert first["mean"] == pytest.approx(0.1) and second["std"] == pytest.approx(0.0816497, rel=1e-5)
    assert second["samples"] == 3 and first["grid"] == [8, 8]


def test_calibrate_reads_geneval_prompts(tmp_path, monkeypatch, capsys):
    # The checkpoint loader is replaced by the random tiny model; the prompts reach the text encoder.
    built = zoo.build("infinity-tiny")
    encoded = []

    def fake_load(args, device):
        def encode(prompts):
            encoded.append(list(prompts))
            return zoo.random_infinity_text(128, len(prompts), len(encoded))

        return built.model, built.vae, encode

    monkeypatch.setattr(cli, "_load_model", fake_load)
    monkeypatch.setattr(cli, "_check_loading", lambda args, family: None)  # no checkpoint files in the test
    out = tmp_path / "s.json"
    argv = ["calibrate", "--checkpoint", "m", "--vae", "v", "--text-encoder", "t", "--pn", "0.06M", "--device", "cpu"]
    argv += ["--geneval-prompts", str(DATA / "geneval_sample.jsonl"), "--batch-size", "3", "--out", str(out)]
    assert cli.main(argv) == 0
    assert encoded == [
        ["a photo of a teapot", "a photo of a green kite and a yellow boat", "a photo of a chair left of a lamp"]
    ]
    table = json.loads((tmp_path / "s.table.json").read_text())
    assert len(table["entries"]) == 3 * table["units"]  # the paper schedule's 3 fidelity steps x units
    assert all(e["samples"] == 3 for e in table["entries"])  # 3 prompts, one null-guidance row each
    assert "the mean ± std table" in capsys.readouterr().out
    dpg = ["--dpg-prompts", str(DATA / "dpg_prompts"), "--batch-size", "3", "--out", str(out)]
    assert cli.main(argv[:-6] + dpg) == 0
    assert [p.split()[0] for p in encoded[-1]] == ["A", "An", "Three"]  # DPG prompts in id order: 2, 7, 10
