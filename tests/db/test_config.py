"""Database configuration never shows a password."""

from __future__ import annotations

import pytest

from engine.db import DatabaseConfig
from engine.db.session import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://wsm:s3cret@db:5432/wsm", "postgresql://wsm:***@db:5432/wsm"),
        (
            "postgresql://wsm@db/wsm?password=s3cret&ssl=require",
            "postgresql://wsm@db/wsm?password=***&ssl=require",
        ),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:***@/postgres?host=/tmp/x",
        ),
        ("postgresql://db/wsm", "postgresql://db/wsm"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_config_repr_hides_the_password() -> None:
    cfg = DatabaseConfig(url="postgresql://wsm:s3cret@db/wsm")
    assert "s3cret" not in repr(cfg)
    assert "wsm:***@db" in repr(cfg)
