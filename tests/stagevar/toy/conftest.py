"""Fixtures of the toy-model tests: one CI-rehearsal training run (through the command line's ``main``) shared by
the tests that need trained files."""

import pytest

from stagevar.toy.train import main
from stagevar_kernels.testing import one_intra_op_thread


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def rehearsal_dir(tmp_path_factory):
    """A finished rehearsal run (3 + 3 steps of batch 2 on the CPU, then the checker on 1 caption per preset)."""
    out = tmp_path_factory.mktemp("toy_rehearsal")
    with one_intra_op_thread():
        assert main(["--out", str(out), "--config", "toy64-rehearsal", "--rehearsal", "--eval-n", "1"]) == 0
    return out
