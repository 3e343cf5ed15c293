"""Binance spot: adapter (schemas, parse, venue) and simulator."""

from adapters.binance.venue import USDM_VENUE, VENUE, BinanceUsdmVenue, BinanceVenue

__all__ = ["USDM_VENUE", "VENUE", "BinanceUsdmVenue", "BinanceVenue"]
