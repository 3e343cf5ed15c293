from __future__ import annotations

import random

import pytest

from engine.backoff import Backoff, ReconnectPolicy, TokenBucket


def test_full_jitter_stays_under_a_capped_exponential_window() -> None:
    policy = ReconnectPolicy(delay=1.0, max_delay=8.0, max_attempts=0)
    backoff = Backoff(policy, random.Random(3))
    windows, delays = [], []
    for _ in range(10):
        windows.append(backoff.window())
        d = backoff.next_delay()
        assert d is not None
        delays.append(d)
    assert windows == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    assert all(0.0 <= d <= w for d, w in zip(delays, windows))
    assert len(set(delays)) == len(delays), "jittered delays differ"


def test_max_attempts_then_give_up_and_reset() -> None:
    backoff = Backoff(ReconnectPolicy(max_attempts=3, jitter=False, delay=0.5))
    assert [backoff.next_delay() for _ in range(4)] == [0.5, 1.0, 2.0, None]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_no_auto_reconnect_gives_up_at_once() -> None:
    assert Backoff(ReconnectPolicy(auto=False)).next_delay() is None


def test_linear_backoff_when_not_exponential() -> None:
    backoff = Backoff(ReconnectPolicy(exponential_backoff=False, jitter=False, delay=2.0))
    assert [backoff.next_delay() for _ in range(3)] == [2.0, 2.0, 2.0]


def test_policy_refuses_bad_values() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="max_attempts"):
        msgspec.convert({"max_attempts": -1}, ReconnectPolicy)
    with pytest.raises(msgspec.ValidationError, match="unknown field `retries`"):
        msgspec.convert({"retries": 3}, ReconnectPolicy)


def test_token_bucket_spends_and_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(3, 2.0, clock=lambda: now[0])
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.delay_for() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.try_take()
    assert not bucket.try_take()
    now[0] = 100.0
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False], "capped at capacity"


async def test_token_bucket_take_waits_for_a_token() -> None:
    bucket = TokenBucket(1, 50.0)
    await bucket.take()
    await bucket.take()  # waits about 20 ms for the refill
    assert bucket.spent == 2 and bucket.waited > 0


def test_sliding_window_never_allows_more_than_the_limit_in_any_period() -> None:
    from engine.backoff import SlidingWindow

    now = [0.0]
    window = SlidingWindow(4, 1.0, clock=lambda: now[0])
    sent = []
    for _ in range(20):
        wait = window.delay()
        now[0] += wait
        window.record()
        sent.append(now[0])
        now[0] += 0.01
    for t in sent:
        assert sum(1 for u in sent if t <= u < t + 1.0) <= 4
    assert sent[-1] < 5.0, "and it does not wait longer than it must"
