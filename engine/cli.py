"""`wsm`: the command line, and the composition root of the engine."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

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
    """A synthetic writer in the background and `wsm tail` in the foreground."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "synthetic",
            "--instance",
            args.instance,
            "--rate",
            str(args.rate),
        ]
        + (["--duration", str(args.duration)] if args.duration else []),
    )
    try:
        print(
            f"wsm demo: synthetic writer (pid {writer.pid}) on instance {args.instance!r}; "
            f"tail it from another shell with: wsm tail synthetic --instance {args.instance} "
            "--json",
            file=sys.stderr,
        )
        from engine.tail import tail

        _wait_for_ring(args.instance, "synthetic", writer)
        tail("synthetic", instance=args.instance, as_json=True, count=args.count, timeout=5.0)
    except KeyboardInterrupt:
        pass
    finally:
        writer.send_signal(signal.SIGINT)
        writer.wait(timeout=10)
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


def _wait_for_ring(instance: str, exchange: str, proc: subprocess.Popen[bytes]) -> None:
    import time

    from engine import shm

    name = shm.ring_name(instance, exchange)
    deadline = time.monotonic() + 30
    while not shm.exists(name) or not shm.exists(shm.symbols_name(instance)):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise WSMError(f"the writer did not create ring {name!r}")
        time.sleep(0.05)


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

    p = sub.add_parser("demo", help="run the demo", parents=[common])
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--count", type=int, help="stop after N records")
    p.add_argument("--duration", type=float)
    p.set_defaults(func=_cmd_demo)

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
