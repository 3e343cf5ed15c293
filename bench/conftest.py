"""Benchmarks are opt-in: `pytest bench/` (never part of the test suite's pass/fail)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import new_instance


@pytest.fixture
def instance() -> Iterator[str]:
    return new_instance()
