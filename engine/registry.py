"""Adapters are found through the `wsm.adapters` entry-point group (name -> Venue object), so
an adapter can live in a distribution of its own."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from engine.errors import ConfigError
from engine.venue import Venue

GROUP = "wsm.adapters"


@functools.cache
def venues() -> dict[str, Venue]:
    found: dict[str, Venue] = {}
    for ep in entry_points(group=GROUP):
        venue = ep.load()
        if not isinstance(venue, Venue):
            raise ConfigError(f"entry point {ep.name}", f"{ep.value} is not an engine.venue.Venue")
        found[ep.name] = venue
    return found


def load_venue(name: str) -> Venue:
    found = venues()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError("exchange", f"unknown exchange {name!r} (known: {known})")
    return found[name]
