"""OKX (API v5 public WebSocket): adapter and simulator."""

from adapters.okx.venue import VENUE, OkxVenue

__all__ = ["VENUE", "OkxVenue"]
