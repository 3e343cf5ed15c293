"""Fixtures shared by every test: unique engine instances that must leave nothing behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from engine import shm

settings.register_profile(
    "wsm", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("wsm")


def new_instance() -> str:
    return f"t{os.getpid()}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def instance() -> Iterator[str]:
    """A fresh engine instance name; the test fails if it leaves shared memory behind."""
    name = new_instance()
    yield name
    leftovers = shm.instance_segments(name)
    for seg in leftovers:
        shm.unlink(seg)
    assert not leftovers, f"test left shared-memory segments behind: {leftovers}"


@pytest.fixture(params=["c", "python"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each ring test runs on the compiled helper and on the pure-Python fallback."""
    if request.param == "c":
        pytest.importorskip("engine._ring", reason="the C helper was not compiled")
    return str(request.param)
