"""RELIABILITY row 23: schemathesis over /openapi.json with a valid token: no 5xx, responses
match the schema, data that breaks the schema is refused with 4xx. Bounded: a fixed seed, a
few examples per operation, a time budget well under a minute."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.api.conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
API_CONFIG = {"rate_limit_per_second": 1000.0, "rate_limit_burst": 2000}
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,negative_data_rejection"
)


async def test_schemathesis_finds_nothing(stack: Stack, tmp_path: Path) -> None:
    token = stack.token(uuid.uuid4())
    exe = Path(sys.executable).parent / "schemathesis"
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "run",
        f"{stack.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--exclude-path",
        "/api/websocket/live",  # an endless event stream
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--workers",
        "1",
        "--max-time",
        "25",
        "--request-timeout",
        "20",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-3000:]
