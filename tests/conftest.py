"""Fixtures only; shared constants and helpers live in ``tests/_helpers.py``."""

from __future__ import annotations

import pytest
from _helpers import DEVICES


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)
