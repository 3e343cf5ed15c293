"""Bybit v5 public market data (spot and linear perpetuals): adapter and simulator."""

from adapters.bybit.venue import LINEAR_VENUE, VENUE, BybitLinearVenue, BybitVenue

__all__ = ["LINEAR_VENUE", "VENUE", "BybitLinearVenue", "BybitVenue"]
