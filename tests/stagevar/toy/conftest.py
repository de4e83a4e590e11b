"""Fixtures of the toy-model tests: one CI-rehearsal training run (through the command line's ``main``) shared by
the tests that need trained files."""

import pytest
import torch

from stagevar.toy.train import main


@pytest.fixture(autouse=True)
def _one_thread():
    # on a shared 2-core machine intra-op threads only add contention for models this small; restored after each test
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def rehearsal_dir(tmp_path_factory):
    """A finished rehearsal run (3 + 3 steps of batch 2 on the CPU, then the checker on 1 caption per preset)."""
    out = tmp_path_factory.mktemp("toy_rehearsal")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["--out", str(out), "--config", "toy64-rehearsal", "--rehearsal", "--eval-n", "1"]) == 0
    finally:
        torch.set_num_threads(n)
    return out
