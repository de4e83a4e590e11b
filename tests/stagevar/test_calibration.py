"""Rank calibration: the energy rank of Eq. 4 and the per-unit schedule it produces."""

import pytest
import torch

from stagevar import calibrate, presets, zoo
from stagevar.calibration import energy_rank


def test_energy_rank_of_known_spectra():
    u, _ = torch.linalg.qr(torch.randn(40, 40, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    s = torch.tensor([4.0, 2.0, 1.0, 0.5] + [0.0] * 8, dtype=torch.float64)  # energies 16, 4, 1, 0.25
    x = (u[:, :12] * s) @ v.T
    total = 21.25
    assert energy_rank(x[None], 16 / total).item() == 1
    assert energy_rank(x[None], 16.5 / total).item() == 2
    assert energy_rank(x[None], 21 / total).item() == 3
    assert energy_rank(x[None], 1.0).item() == 4
    assert energy_rank(torch.stack([x, x * 3]), 0.9).tolist() == [2, 2]  # scale invariant, batched


def test_calibration_table_and_schedule():
    built = zoo.build("infinity-tiny")
    base = presets("infinity")["paper"]
    result = calibrate((built.new_session(batch=2, seed=i) for i in range(2)), base, alpha=0.96)
    units = len(built.new_session().units("chunk"))
    assert sorted(result.samples) == [(o, u) for o in range(3) for u in range(units)]
    assert all(len(v) == 4 for v in result.samples.values())  # 2 runs x 2 null rows
    assert all(0 < r <= 1 for v in result.samples.values() for r in v)
    table = result.table()
    assert table.splitlines()[0].split()[-3:] == ["8x8", "12x12", "16x16"] and "±" in table
    schedule = result.schedule()
    assert schedule.rank_ratios[1:] == (0.0, 0.0)
    assert len(schedule.rank_ratios[0]) == units
    assert schedule.rank_ratios[0][0] == pytest.approx(result.mean(0, 0), abs=1e-4)
    schedule.plan(7, units)  # the loop accepts it


def test_calibrate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="^alpha"):
        calibrate([], presets("infinity")["paper"], alpha=1.5)
    with pytest.raises(ValueError, match="^base"):
        calibrate([], presets("infinity")["vanilla"])
    with pytest.raises(ValueError, match="^sessions"):
        calibrate([], presets("infinity")["paper"])
