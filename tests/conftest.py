"""Shared test set-up.

Without CUDA, Triton kernels run on CPU through the interpreter: TRITON_INTERPRET must be set before any
kernel module is imported, so it is set here, before the tests import anything of the project.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """``stagevar_kernels.testing.one_intra_op_thread`` around a test; folders of tiny-model tests use it through an
    autouse wrapper. (Imported here, not at the top: TRITON_INTERPRET must be set before the kernels import.)"""
    from stagevar_kernels.testing import one_intra_op_thread

    with one_intra_op_thread():
        yield
