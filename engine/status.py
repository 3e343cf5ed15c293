"""`wsm status`: what a running engine is doing, read from its status board in /dev/shm."""

from __future__ import annotations

import os
import time

import orjson

from engine import shm
from engine.coordinator import status_name
from engine.errors import WSMError


def read_status(instance: str) -> dict[str, object]:
    path = os.path.join(shm.SHM_DIR, status_name(instance))
    try:
        with open(path, "rb") as f:
            return dict(orjson.loads(f.read()))
    except FileNotFoundError:
        raise WSMError(f"no engine is running as instance {instance!r} (no {path})") from None


def print_status(instance: str, *, as_json: bool = False) -> int:
    board = read_status(instance)
    if as_json:
        print(orjson.dumps(board).decode())
        return 0
    age = time.time() - float(board["at"])  # type: ignore[arg-type]
    print(f"instance {instance}: status written {age:.1f}s ago")
    head = (
        f"{'exchange':<10} {'connection':<20} {'state':<11} {'msg/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'gaps':>5} {'reconn':>6} {'last msg':>9}"
    )
    print(head)
    for c in board["connections"]:  # type: ignore[attr-defined]
        m = c["metrics"]
        p50 = m["latency_p50_us"]
        p99 = m["latency_p99_us"]
        last = m["last_message_age_s"]
        print(
            f"{c['exchange']:<10} {c['id']:<20} {c['state']:<11} {m['messages_per_s']:>8.0f} "
            f"{(p50 or 0) / 1000:>7.2f} {(p99 or 0) / 1000:>7.2f} "
            f"{sum(m['parse_errors'].values()):>6} {m['gaps']:>5} {m['reconnects']:>6} "
            f"{'-' if last is None else f'{last:.1f}s':>9}"
        )
    return 0
