"""KuCoin spot (classic WebSocket, bullet-public token): adapter and simulator."""

from adapters.kucoin.venue import VENUE, KucoinVenue

__all__ = ["VENUE", "KucoinVenue"]
