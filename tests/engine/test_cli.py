"""The `wsm` commands as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import shm

WSM = [sys.executable, "-m", "engine.cli"]
pytestmark = pytest.mark.slow


def start(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*WSM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )  # type: ignore[call-overload]


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def simulator() -> dict[str, str]:  # type: ignore[misc]
    proc = start("simulate", "--exchange", "binance", "--port", "0", "--rate", "100")
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    yield info
    proc.terminate()
    proc.communicate(timeout=30)


def test_simulate_prints_its_urls(simulator: dict[str, str]) -> None:
    import urllib.request

    assert simulator["ws_url"].startswith("ws://127.0.0.1:")
    assert simulator["rest_url"].startswith("http://127.0.0.1:")
    with urllib.request.urlopen(simulator["rest_url"] + "/_sim/stats", timeout=10) as resp:
        assert json.loads(resp.read())["venue"] == "binance"


def test_run_and_status(simulator: dict[str, str], instance: str, tmp_path: Path) -> None:
    config = tmp_path / "wsm.toml"
    config.write_text(f"""
instance = "{instance}"
stats_interval = 0.2
[database]
enabled = false
[exchanges.binance]
ws_url = "{simulator["ws_url"]}"
rest_url = "{simulator["rest_url"]}"
[[connections]]
exchange = "binance"
id = "main"
subscriptions = [{{ channel = "trades", symbols = ["BTC/USDT"] }}]
""")
    engine = start("run", "--config", str(config))

    def live() -> dict | None:  # type: ignore[type-arg]
        done = subprocess.run(
            [*WSM, "status", "--instance", instance, "--json"], capture_output=True, text=True
        )
        if done.returncode != 0:
            return None
        board = json.loads(done.stdout)
        conns = board["connections"]
        return (
            board
            if conns and conns[0]["state"] == "live" and conns[0]["metrics"]["messages_in"]
            else None
        )

    try:
        board = wait_for(live, 60, "a live connection in `wsm status`")
        assert board["connections"][0]["id"] == "main"
        table = subprocess.run(
            [*WSM, "status", "--instance", instance], capture_output=True, text=True
        )
        assert "main" in table.stdout and "live" in table.stdout
        tail = subprocess.run(
            [*WSM, "tail", "binance", "--instance", instance, "--json", "--count", "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert all(json.loads(line)["symbol"] == "BTC-USDT" for line in tail.stdout.splitlines())
    finally:
        engine.send_signal(signal.SIGTERM)
        _, err = engine.communicate(timeout=60)
        assert engine.returncode == 0, err
    assert shm.instance_segments(instance) == [], "a clean stop leaves nothing in /dev/shm"


def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[exchanges.binance]\nws_url = 'x'\nmax_conections = 3\n")
    done = subprocess.run(
        [*WSM, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "exchanges.binance.max_conections" in done.stderr


def test_unknown_exchange_names_the_known_ones() -> None:
    done = subprocess.run(
        [*WSM, "simulate", "--exchange", "nowhere"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "unknown exchange 'nowhere'" in done.stderr and "binance" in done.stderr


def test_status_without_an_engine(instance: str) -> None:
    done = subprocess.run(
        [*WSM, "status", "--instance", instance], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"no engine is running as instance {instance!r}" in done.stderr


def test_the_demo_runs_and_cleans_up(instance: str, tmp_path: Path) -> None:
    # the demo's embedded Postgres lives under the user's data folder: a fresh one here
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    env.pop("WSM_DATABASE_URL", None)
    done = subprocess.run(
        [*WSM, "demo", "--instance", instance, "--duration", "3", "--api-port", "0"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "WSM demo is running" in done.stdout
    assert "binance-demo: live" in done.stdout
    assert "Dashboard: http://127.0.0.1:" in done.stdout, "the demo serves the dashboard"
    token = done.stdout.split("valid 12 h, user ")[1].splitlines()[1].strip()
    assert token.count(".") == 2, "and prints a token for it"
    assert shm.instance_segments(instance) == []


def test_token_is_accepted_by_the_api_secret(tmp_path: Path) -> None:
    import jwt

    secret = "s" * 48
    env = {**os.environ, "WSM_API_JWT_SECRET": secret}
    user = "3f0e4f7e-1111-4222-8333-944455556666"
    done = subprocess.run(
        [*WSM, "token", "--user", user, "--ttl", "60"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), secret, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == user and claims["role"] == "authenticated"
    assert secret not in done.stdout + done.stderr
    bad = subprocess.run([*WSM, "token", "--user", "nobody"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--user must be a UUID" in bad.stderr
