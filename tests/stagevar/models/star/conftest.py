"""Fixtures for the STAR tests (helpers live in star_helpers.py)."""

from __future__ import annotations

import pytest
from star_helpers import tiny


@pytest.fixture
def tiny_model():
    return tiny()
