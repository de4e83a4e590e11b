"""Fixtures of the engine tests: the tiny random-weight models (CPU, one intra-op thread for determinism)."""

import pytest

from stagevar import zoo


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def infinity_tiny():
    return zoo.build("infinity-tiny")


@pytest.fixture(scope="module")
def star_tiny():
    return zoo.build("star-tiny")
