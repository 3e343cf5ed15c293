"""Reconnect policy, capped exponential backoff with full jitter, and the per-exchange budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated

import msgspec
from msgspec import Meta


class ReconnectPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a connection comes back after it drops.

    The n-th consecutive failed attempt waits a random time in [0, min(max_delay,
    delay * 2**n)] ("full jitter"; without `exponential_backoff` the window stays `delay`).
    After `max_attempts` consecutive failures (0: never give up) the connection is `failed`.
    A connection that stayed live for `reset_after` seconds starts counting from zero again.
    """

    auto: bool = True
    max_attempts: Annotated[int, Meta(ge=0)] = 10
    delay: Annotated[float, Meta(ge=0)] = 1.0
    max_delay: Annotated[float, Meta(ge=0)] = 30.0
    exponential_backoff: bool = True
    jitter: bool = True
    reset_after: Annotated[float, Meta(ge=0)] = 60.0


class Backoff:
    def __init__(self, policy: ReconnectPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.attempts = 0
        self._rng = rng or random.Random()

    def window(self) -> float:
        p = self.policy
        if not p.exponential_backoff:
            return min(p.delay, p.max_delay)
        return min(p.max_delay, p.delay * 2.0 ** min(self.attempts, 62))

    def next_delay(self) -> float | None:
        """Delay before the next attempt, or None when the policy gives up."""
        p = self.policy
        if not p.auto or (p.max_attempts and self.attempts >= p.max_attempts):
            return None
        window = self.window()
        self.attempts += 1
        return self._rng.uniform(0.0, window) if p.jitter else window

    def reset(self) -> None:
        self.attempts = 0


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second. Shared by everything that spends the
    same venue budget (connection attempts and REST snapshots of one exchange)."""

    def __init__(
        self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._tokens = float(capacity)
        self._stamp = clock()
        self.spent = 0
        self.waited = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self, n: float = 1.0) -> bool:
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            self.spent += 1
            return True
        return False

    def delay_for(self, n: float = 1.0) -> float:
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate)

    async def take(self, n: float = 1.0) -> None:
        while not self.try_take(n):
            wait = self.delay_for(n)
            self.waited += wait
            await asyncio.sleep(wait)


class SlidingWindow:
    """At most `limit` events in any `period` seconds, spaced at least `period / limit` apart
    (venues count arrivals as they process them, so a burst that left in time can still
    arrive compressed; a token bucket would even let its burst and refill share a second)."""

    def __init__(
        self, limit: int, period: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = max(1, limit)
        self.period = period
        self._clock = clock
        self._times: deque[float] = deque()

    def delay(self) -> float:
        now = self._clock()
        times = self._times
        while times and now - times[0] >= self.period:
            times.popleft()
        gap = self.period / self.limit - (now - times[-1]) if times else 0.0
        if len(times) < self.limit:
            return max(0.0, gap)
        return max(gap, self.period - (now - times[0]))

    def record(self) -> None:
        self._times.append(self._clock())

    async def acquire(self) -> None:
        while (wait := self.delay()) > 0:
            await asyncio.sleep(wait)
        self.record()
