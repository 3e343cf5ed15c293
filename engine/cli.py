"""`wsm`: the command line, and the composition root of the engine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from engine.errors import WSMError


def _cmd_tail(args: argparse.Namespace) -> int:
    from engine.tail import tail

    tail(
        args.exchange,
        instance=args.instance,
        symbol=args.symbol,
        count=args.count,
        as_json=args.json,
        start=args.start,
        timeout=args.timeout,
    )
    return 0


def _cmd_synthetic(args: argparse.Namespace) -> int:
    from engine.synthetic import serve

    serve(args.instance, args.exchange, args.exchange_id, args.rate, args.duration)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import uvloop

    from engine.demo import run_demo

    exchanges = None if args.exchanges == "all" else args.exchanges.split(",")
    uvloop.run(
        run_demo(
            instance=args.instance,
            exchanges=exchanges,
            rate=args.rate,
            duration=args.duration,
            api_port=args.api_port,
        )
    )
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from uuid import UUID

    from api.auth import issue_token
    from api.secret import resolve_secret
    from engine.config import load_config

    try:
        user = UUID(args.user)
    except ValueError:
        raise WSMError(f"--user must be a UUID, not {args.user!r}") from None
    api = load_config(args.config).api
    secret, _ = resolve_secret(api)
    print(issue_token(secret, user, audience=api.jwt_audience, issuer=api.jwt_issuer, ttl=args.ttl))
    return 0


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    from engine.db.commands import db_migrate

    return db_migrate(args)


def _cmd_keys(args: argparse.Namespace) -> int:
    from engine.db.commands import keys

    return keys(args)


def _add_db_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`wsm db migrate` and `wsm keys add|rotate|revoke|list`."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--database-url",
        help="Postgres URL (default: WSM_DATABASE_URL, else the embedded server)",
    )
    p = sub.add_parser("db", help="the Postgres database")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    p = db_sub.add_parser("migrate", help="apply pending migrations (sql/)", parents=[db])
    p.add_argument("--sql-dir", help="migrations directory (default: the repository's sql/)")
    p.set_defaults(func=_cmd_db_migrate)

    p = sub.add_parser("keys", help="exchange API keys (secret read from stdin)")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    owned = argparse.ArgumentParser(add_help=False, parents=[db])
    owned.add_argument("--owner", required=True, help="the platform user's id (UUID)")
    owned.add_argument("--exchange", required=True)
    for name, what in (("add", "store a first key"), ("rotate", "replace the active key")):
        p = keys_sub.add_parser(name, help=what, parents=[owned])
        p.add_argument("--key-id", required=True, help="the exchange's API key id")
        if name == "rotate":
            p.add_argument(
                "--overlap", type=float, help="seconds the old key keeps working (default 24 h)"
            )
    p = keys_sub.add_parser("revoke", help="make a key version unusable now", parents=[owned])
    p.add_argument("--version", type=int, required=True)
    p = keys_sub.add_parser("list", help="key metadata (never secrets)", parents=[db])
    p.add_argument("--owner")
    p.add_argument("--exchange")
    p.add_argument("--json", action="store_true", help="JSON lines")
    for action in keys_sub.choices.values():
        action.set_defaults(func=_cmd_keys)


def _cmd_simulate(args: argparse.Namespace) -> int:
    import uvloop

    from engine.simulate import serve

    uvloop.run(
        serve(
            args.exchange,
            host=args.host,
            port=args.port,
            rate=args.rate,
            ping_interval=args.ping_interval,
            max_lifetime=args.max_lifetime,
            seed=args.seed,
            extra_symbols=args.symbols,
            options=dict(args.option),
            rest_port=args.rest_port,
            blast=args.blast,
            blast_count=args.blast_count,
        )
    )
    return 0


def _sim_option(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` of `wsm simulate --option`: VALUE as JSON when it parses (numbers, true)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _cmd_bench(args: argparse.Namespace) -> int:
    from bench.main import bench

    return bench(args)


def _cmd_run(args: argparse.Namespace) -> int:
    import uvloop

    from engine.config import load_config
    from engine.run import run_engine

    config = load_config(args.config)
    uvloop.run(run_engine(config))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from engine.status import print_status

    return print_status(args.instance, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsm", description="WebSocket market-data manager")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--instance",
        default=os.environ.get("WSM_INSTANCE", "default"),
        help="engine instance name (shared-memory segments are named after it)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tail", help="print an exchange's records as they arrive", parents=[common])
    p.add_argument("exchange")
    p.add_argument("--symbol", help="only this symbol (BTC-USDT, BTC/USDT or the venue's own)")
    p.add_argument("--count", type=int, help="stop after N records")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.add_argument("--start", choices=("newest", "oldest"), default="newest")
    p.add_argument("--timeout", type=float, help="stop after this many idle seconds")
    p.set_defaults(func=_cmd_tail)

    p = sub.add_parser(
        "synthetic", help="write a synthetic market into a ring (testing)", parents=[common]
    )
    p.add_argument("--exchange", default="synthetic")
    p.add_argument("--exchange-id", type=int, default=63)
    p.add_argument("--rate", type=float, default=20.0, help="events per second")
    p.add_argument("--duration", type=float, help="seconds (default: until interrupted)")
    p.set_defaults(func=_cmd_synthetic)

    p = sub.add_parser("demo", help="simulators + engine with a default config")
    p.add_argument("--instance", default="demo")
    p.add_argument(
        "--exchanges", default="all", help="comma-separated, or 'all' (every demo exchange)"
    )
    p.add_argument("--rate", type=float, default=50.0, help="simulated market events/s")
    p.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    p.add_argument("--api-port", type=int, help="API and dashboard port (0: any free port)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("token", help="issue an API token for a user (local use)")
    p.add_argument("--user", required=True, help="the platform user's id (UUID)")
    p.add_argument("--ttl", type=float, default=3600.0, help="seconds it stays valid")
    p.add_argument("--config", help="TOML file (WSM_ variables override it)")
    p.set_defaults(func=_cmd_token)

    p = sub.add_parser("simulate", help="run an exchange simulator")
    p.add_argument("--exchange", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument(
        "--rest-port",
        type=int,
        default=0,
        help="for venues whose REST API has a listener of its own (0: any free port)",
    )
    p.add_argument("--rate", type=float, default=50.0, help="market events per second")
    p.add_argument("--ping-interval", type=float, help="server pings every N seconds")
    p.add_argument("--max-lifetime", type=float, help="cut connections after N seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--symbols", type=int, default=0, help="extra synthetic symbols")
    p.add_argument(
        "--option",
        type=_sim_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a venue-specific simulator option (repeatable), e.g. ping_interval_ms=500",
    )
    p.add_argument(
        "--blast",
        metavar="RATE",
        help="benchmarks: pre-encoded frames to every subscriber, 'max' or frames/s per stream "
        "(also on demand: GET /_sim/blast?rate=max&count=N)",
    )
    p.add_argument("--blast-count", type=int, help="frames per stream and connection")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "bench",
        help="end-to-end benchmarks against the simulators (sections: ceiling wsm peers "
        "paced latency scaling fanout; or soak)",
    )
    p.add_argument("sections", nargs="*", help="sections to run (default: all), or 'soak'")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--record", action="store_true", help="append the report to bench/RESULTS.md")
    p.add_argument("--tiny", action="store_true", help="a tiny configuration (checks, no figures)")
    p.add_argument("--peers", help="comma-separated peers (default: websockets,cryptofeed,ccxt)")
    p.add_argument("--minutes", type=float, default=5.0, help="soak: how long")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("run", help="run the engine")
    p.add_argument("--config", help="TOML file (WSM_ variables override it)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "status", help="connections, states and rates of a running engine", parents=[common]
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)

    _add_db_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WSMError as exc:
        print(f"wsm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
