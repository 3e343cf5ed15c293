"""Configuration: one typed, frozen struct tree, loaded once at the edge from a TOML file and
`WSM_` environment variables (which win), validated before anything starts.

An environment variable names a key path with underscores: `WSM_DATABASE_URL` is
`database.url`, `WSM_EXCHANGES_BINANCE_WS_URL` is `exchanges.binance.ws_url`. An unknown key,
in the file or the environment, stops the start with an error naming it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any, get_args, get_origin, get_type_hints
from uuid import UUID

import msgspec
from msgspec import Meta

from engine.backoff import ReconnectPolicy
from engine.db.session import DatabaseConfig
from engine.errors import ConfigError

# WSM_ variables that are not configuration keys.
NOT_CONFIG = frozenset(
    {
        "WSM_RING_BACKEND",
        "WSM_TEST_DATABASE_URL",
        "WSM_PYTHON",
        "WSM_VENV",
        "WSM_CONFIG",
        "WSM_MASTER_KEY",
    }
)


class ExchangeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per exchange; unset values take the adapter's defaults."""

    ws_url: str | None = None
    rest_url: str | None = None
    max_connections: Annotated[int, Meta(gt=0)] = 16
    heartbeat_idle: Annotated[float, Meta(gt=0)] | None = None
    heartbeat_timeout: Annotated[float, Meta(gt=0)] | None = None
    max_lifetime: Annotated[float, Meta(gt=0)] | None = None
    rollover_margin: Annotated[float, Meta(ge=0)] | None = None
    max_message_bytes: Annotated[int, Meta(gt=0)] | None = None
    ring_capacity: Annotated[int, Meta(gt=0)] | None = None
    streams_per_connection: Annotated[int, Meta(gt=0)] | None = None
    budget: Annotated[int, Meta(gt=0)] | None = None  # connects + snapshots: bucket size
    budget_per_second: Annotated[float, Meta(gt=0)] | None = None
    audit_interval: Annotated[float, Meta(gt=0)] | None = None  # seconds between listings
    # CPUs the exchange's worker process may run on (Linux CPU affinity; None: any). A worker
    # with a core of its own keeps its full ingest rate whatever else the machine does.
    cpus: list[Annotated[int, Meta(ge=0)]] | None = None


class SubscriptionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: str
    symbols: list[str]
    kinds: list[str] | None = None


class ConnectionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    exchange: str
    id: str
    url: str | None = None
    reconnect: ReconnectPolicy = ReconnectPolicy()
    subscriptions: list[SubscriptionConfig] = []


class ApiConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The REST API and dashboard (`api/`), served in the engine's process."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8765
    # HS256 secret of the bearer tokens (Supabase: the project's JWT secret). None: a secret
    # kept in WSM's data directory for local use (`wsm token`). Never logged (see __repr__).
    jwt_secret: Annotated[str, Meta(min_length=32)] | None = None
    jwt_audience: str = "authenticated"
    jwt_issuer: str | None = None
    jwt_leeway: Annotated[float, Meta(ge=0, le=300)] = 5.0
    # X-Forwarded-For is read only from these peers (CIDRs); never from anyone else
    trusted_proxies: list[str] = []
    # per token (per client address before authentication): a token bucket
    rate_limit_per_second: Annotated[float, Meta(gt=0)] = 20.0
    rate_limit_burst: Annotated[int, Meta(gt=0)] = 40
    max_body_bytes: Annotated[int, Meta(gt=0)] = 64 * 1024
    page_size: Annotated[int, Meta(gt=0, le=1000)] = 100
    max_page_size: Annotated[int, Meta(gt=0, le=10_000)] = 1000
    # a connection's URL override must be on one of these hosts (besides the exchange's own)
    allowed_url_hosts: list[str] = []
    max_connections_per_user: Annotated[int, Meta(gt=0)] = 20
    max_ip_whitelist_per_user: Annotated[int, Meta(gt=0)] = 100  # allow-list networks
    # exchanges users may open connections to (empty: every installed adapter)
    exchanges: list[str] = []
    # static bearer token that may read /metrics (Prometheus); user tokens may too
    metrics_token: Annotated[str, Meta(min_length=16)] | None = None
    live_interval: Annotated[float, Meta(gt=0)] = 1.0  # dashboard snapshot period
    pool_size: Annotated[int, Meta(gt=0)] = 8  # the API's own Postgres connections

    def __repr__(self) -> str:  # the secrets never reach a log line
        shown = {
            f: ("***" if f in ("jwt_secret", "metrics_token") and v is not None else v)
            for f in self.__struct_fields__
            for v in (getattr(self, f),)
        }
        return "ApiConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    instance: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "default"
    # owner (platform user id) of what the engine itself creates: config and API-less use
    owner: UUID = UUID(int=0)
    ring_capacity: Annotated[int, Meta(gt=0)] = 1 << 20
    stats_interval: Annotated[float, Meta(gt=0)] = 1.0
    worker_restart_delay: Annotated[float, Meta(ge=0)] = 0.5
    rollover_overlap: Annotated[float, Meta(ge=0)] = 1.0
    exchanges: dict[str, ExchangeConfig] = {}
    connections: list[ConnectionConfig] = []
    api: ApiConfig = ApiConfig()
    database: DatabaseConfig = DatabaseConfig()


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> EngineConfig:
    """The configuration from a TOML file (optional) and `WSM_` variables of `env`."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    for name, value in sorted(env.items()):
        if name.startswith("WSM_") and name not in NOT_CONFIG:
            keys = _env_path(EngineConfig, name[4:].lower())
            if keys is None:
                raise ConfigError(name, "unknown configuration key")
            _assign(data, keys, _env_value(keys, value))
    return convert(data)


def _env_value(keys: list[str], value: str) -> Any:
    """A list-typed key takes a comma-separated value (`WSM_API_TRUSTED_PROXIES=a,b`)."""
    tp: Any = EngineConfig
    for key in keys:
        if get_origin(tp) is dict:
            tp = _unwrap(get_args(tp)[1])
        elif isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            tp = _unwrap(get_type_hints(tp, include_extras=True)[key])
    if get_origin(tp) is list:
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def convert(data: Mapping[str, Any]) -> EngineConfig:
    exchanges = data.get("exchanges", {})
    if isinstance(exchanges, Mapping):
        for name, section in exchanges.items():  # validated one by one to name the key
            _convert(section, ExchangeConfig, f"exchanges.{name}")
    config: EngineConfig = _convert(data, EngineConfig, "")
    return config


def _convert(data: Any, tp: type[Any], prefix: str) -> Any:
    try:
        return msgspec.convert(data, tp, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rpartition(" - at `$")[2].rstrip("`") if " - at `$" in text else ""
        unknown = re.search(r"unknown field `([^`]+)`", text)
        if unknown:
            path = f"{path}.{unknown.group(1)}"
        key = f"{prefix}{path}".lstrip(".") or "(top level)"
        raise ConfigError(key, text) from None


def _env_path(tp: Any, rest: str) -> list[str] | None:
    """Key path of an environment variable's name, matched against the config types."""
    origin = get_origin(tp)
    if origin is dict:
        value_type = get_args(tp)[1]
        parts = rest.split("_")
        for i in range(1, len(parts)):
            for key in ("-".join(parts[:i]), "_".join(parts[:i])):
                sub = _env_path(value_type, "_".join(parts[i:]))
                if sub is not None:
                    return [key, *sub]
        return None
    if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
        return [] if rest == "" else None
    hints = get_type_hints(tp, include_extras=True)
    for field in sorted(tp.__struct_fields__, key=len, reverse=True):
        if rest == field:
            return [field]
        if rest.startswith(field + "_"):
            sub = _env_path(_unwrap(hints[field]), rest[len(field) + 1 :])
            if sub is not None:
                return [field, *sub]
    return None


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) is not dict and len(args) == 1 and get_origin(tp) is not list:
        return _unwrap(args[0])
    return tp


def _assign(data: dict[str, Any], keys: list[str], value: str) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value
