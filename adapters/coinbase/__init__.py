"""Coinbase Advanced Trade: adapter (schemas, parse, venue) and simulator."""

from adapters.coinbase.venue import VENUE, CoinbaseVenue

__all__ = ["VENUE", "CoinbaseVenue"]
