"""Reader process bodies for end-to-end tests."""

from __future__ import annotations

from typing import Any

from engine.ring import RingReader


def collect(instance: str, exchange: str, ready: Any, done: Any, out: Any) -> None:
    """Read the exchange's ring from the start until told to stop; send back the records."""
    rd = RingReader(exchange, instance=instance, start="oldest")
    ready.set()
    rows: list[tuple[Any, ...]] = []
    while True:
        finished = done.is_set()
        recs = rd.read()
        rows.extend(
            (r.kind, r.symbol, r.side, r.flags, r.price, r.size, r.ref, r.seq) for r in recs
        )
        if not recs:
            if finished:
                break
            rd.wait(0.05)
    out.put({"rows": rows, "lost": rd.lost, "generation": rd.generation})
    rd.close()
