from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wsm.toml"
    path.write_text(text)
    return path


def test_file_and_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
instance = "prod"
[exchanges.binance]
ws_url = "wss://example.test"
max_connections = 4

[[connections]]
exchange = "binance"
id = "main"
reconnect = { max_attempts = 5, delay = 1.0 }
subscriptions = [{ channel = "trades", symbols = ["BTC/USDT"] }]
""",
    )
    env = {
        "WSM_DATABASE_URL": "postgresql://db/wsm",
        "WSM_EXCHANGES_BINANCE_MAX_CONNECTIONS": "8",
        "WSM_EXCHANGES_BINANCE_USDM_REST_URL": "https://f.test",
        "WSM_API_PORT": "9000",
        "WSM_RING_BACKEND": "c",  # not a configuration key, allowed
        "OTHER": "x",
    }
    cfg = load_config(path, env)
    assert cfg.instance == "prod"
    assert cfg.database.url == "postgresql://db/wsm"
    assert cfg.exchanges["binance"].max_connections == 8, "the environment wins"
    assert cfg.exchanges["binance"].ws_url == "wss://example.test"
    assert cfg.exchanges["binance-usdm"].rest_url == "https://f.test"
    assert cfg.api.port == 9000
    (conn,) = cfg.connections
    assert conn.reconnect.max_attempts == 5
    assert conn.subscriptions[0].symbols == ["BTC/USDT"]


@pytest.mark.parametrize(
    ("text", "env", "key", "reason"),
    [
        ('instanse = "x"', {}, "instanse", "unknown field `instanse`"),
        ("[exchanges.binance]\nws_ulr = 'x'", {}, "exchanges.binance.ws_ulr", "unknown field"),
        (
            "[exchanges.binance]\nmax_connections = 0",
            {},
            "exchanges.binance.max_connections",
            ">= 1",
        ),
        ("[api]\nport = 'eighty'", {}, "api.port", "Expected `int`"),
        ("", {"WSM_API_PROT": "1"}, "WSM_API_PROT", "unknown configuration key"),
        ("", {"WSM_API_PORT": "99999"}, "api.port", "<= 65535"),
        ("[[connections]]\nid = 'x'", {}, "connections[0]", "missing required field `exchange`"),
    ],
)
def test_a_bad_key_stops_the_start_naming_it(
    tmp_path: Path, text: str, env: dict[str, str], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env)
    assert info.value.key == key
    assert reason in str(info.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "x = = 1"), {})


def test_api_keys_from_the_environment_and_secrets_never_shown() -> None:
    secret = "s3cret-" + "x" * 40
    cfg = load_config(
        None,
        {
            "WSM_API_JWT_SECRET": secret,
            "WSM_API_TRUSTED_PROXIES": "10.0.0.1/32, 192.168.1.0/24",
            "WSM_API_RATE_LIMIT_BURST": "5",
        },
    )
    assert cfg.api.jwt_secret == secret
    assert cfg.api.trusted_proxies == ["10.0.0.1/32", "192.168.1.0/24"]
    assert cfg.api.rate_limit_burst == 5
    assert secret not in repr(cfg) and secret not in repr(cfg.api)


def test_a_short_jwt_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"api\.jwt_secret"):
        load_config(None, {"WSM_API_JWT_SECRET": "short"})
