"""Kraken Spot WebSocket v2: adapter (schemas, parse, venue) and simulator."""

from adapters.kraken.venue import VENUE, KrakenVenue

__all__ = ["VENUE", "KrakenVenue"]
