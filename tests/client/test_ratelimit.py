"""The adaptive rate limiter, driven by a fake clock: no test sleeps."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from mm_pipeline._ratelimit import AdaptiveRateLimiter, parse_rate_limit, seconds_until


class FakeClock:
    """A monotonic clock and wall clock that only move when the limiter sleeps."""

    def __init__(self, wall: float = 1_800_000_000.0, *, oversleep: float = 0.0) -> None:
        self.now = 0.0
        self.wall_offset = wall
        self.oversleep = oversleep  # every sleep wakes this late, like a busy event loop

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_offset + self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        await asyncio.sleep(0)  # others act "during" the sleep, at the old time
        self.now += seconds + self.oversleep


def make(clock: FakeClock, rate_limit: float | None = None, **kw: float) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(
        rate_limit, clock=clock.monotonic, wall_clock=clock.wall, sleep=clock.sleep, **kw
    )


async def start_times(limiter: AdaptiveRateLimiter, clock: FakeClock, n: int) -> list[float]:
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(clock.now)

    await asyncio.gather(*(one() for _ in range(n)))
    return sorted(times)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def assert_paced(times: list[float], rate: float) -> None:
    """Starts are one interval apart (only the first may come early, by half an interval)."""
    between = gaps(times)
    assert between[0] >= 0.5 / rate - 1e-9
    assert between[1:] == pytest.approx([1 / rate] * (len(between) - 1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20", 20.0),
        (" 40 ", 40.0),
        ("20.5", 20.5),
        ("600;w=60", 10.0),
        ("20, 1000;w=3600", 20.0),
        ("", None),
        (None, None),
        ("abc", None),
        ("0", None),
        ("-5", None),
    ],
)
def test_parse_rate_limit(value: str | None, expected: float | None) -> None:
    """RateLimit-Limit is read as a number per second, an IETF `limit;w=` policy, or ignored."""
    assert parse_rate_limit(value) == expected


NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("-4", 0.0),
        (str(NOW + 100), 100.0),  # a Unix timestamp
        ("2027-01-15T08:00:10Z", 10.0),
        ("2027-01-15T08:00:10.500Z", 10.5),
        ("2027-01-15T08:00:10", 10.0),  # naive: UTC
        ("2027-01-15T09:00:10+01:00", 10.0),
        ("Fri, 15 Jan 2027 08:00:10 GMT", 10.0),
        ("2027-01-15T07:00:00Z", 0.0),  # in the past
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_seconds_until(value: str | None, expected: float | None) -> None:
    """Reset and Retry-After headers are understood in every common format, or ignored."""
    assert seconds_until(value, now=NOW) == expected


async def test_starts_conservatively_until_the_limit_is_known() -> None:
    """Before any RateLimit-Limit header the limiter paces at 5 req/s."""
    clock = FakeClock()
    limiter = make(clock)
    times = await start_times(limiter, clock, 11)
    assert_paced(times, 5.0)


async def test_learns_the_limit_and_aims_under_it() -> None:
    """A RateLimit-Limit of 20 makes the limiter pace at 97% of it, with no burst."""
    clock = FakeClock()
    limiter = make(clock)
    limiter.observe({"RateLimit-Limit": "20", "RateLimit-Remaining": "19"})
    assert limiter.rate == pytest.approx(19.4)
    times = await start_times(limiter, clock, 39)
    assert_paced(times, 19.4)


async def test_late_wakeups_do_not_erode_the_rate() -> None:
    """Senders that wake late (a busy loop) keep the schedule: the average pace holds."""
    clock = FakeClock(oversleep=0.03)
    limiter = make(clock, rate_limit=10.0)
    times = await start_times(limiter, clock, 51)
    # The second start may come half an interval early; then one per 0.1 s; the last wakes late.
    assert times[-1] == pytest.approx(0.05 + 49 * 0.1 + 0.03)
    assert min(gaps(times)) >= 0.05 - 1e-9


async def test_explicit_rate_limit_is_a_ceiling() -> None:
    """`rate_limit` is used from the start, and a lower learned limit still wins."""
    clock = FakeClock()
    limiter = make(clock, rate_limit=8.0)
    assert limiter.rate == 8.0
    limiter.observe({"RateLimit-Limit": "100"})
    assert limiter.rate == 8.0
    limiter.observe({"RateLimit-Limit": "4"})
    assert limiter.rate == pytest.approx(3.88)
    assert limiter.ceiling == pytest.approx(3.88)


async def test_429_pauses_every_sender_until_retry_after() -> None:
    """After a 429 with Retry-After: 2, no request starts for two seconds."""
    clock = FakeClock()
    limiter = make(clock)
    limiter.observe({"RateLimit-Limit": "20"})
    await limiter.acquire()
    clock.now = 0.5
    limiter.on_rate_limited(2.0)
    times = await start_times(limiter, clock, 5)
    assert times[0] == pytest.approx(2.5)
    assert limiter.pauses == 1


async def test_429_halves_the_rate_once_per_volley_then_recovers() -> None:
    """A volley of 429s halves the rate once; successes add back a twentieth of the ceiling."""
    clock = FakeClock()
    limiter = make(clock)
    limiter.observe({"RateLimit-Limit": "20"})
    for _ in range(5):
        limiter.on_rate_limited(None)
    assert limiter.rate == pytest.approx(9.7)
    for _ in range(10):
        limiter.on_success()
    assert limiter.rate == pytest.approx(19.4)
    for _ in range(10):
        limiter.on_success()
    assert limiter.rate == pytest.approx(19.4)  # never above the ceiling
    clock.now = 5.0
    limiter.on_rate_limited(None)
    assert limiter.rate == pytest.approx(9.7)


async def test_a_429_with_capacity_left_pauses_without_slowing_down() -> None:
    """A 429 whose RateLimit-Remaining shows capacity was not about our pace: pause only."""
    clock = FakeClock()
    limiter = make(clock)
    limiter.observe({"RateLimit-Limit": "20"})
    limiter.on_rate_limited(1.0, {"RateLimit-Remaining": "12"})
    assert limiter.rate == pytest.approx(19.4)
    assert limiter.pauses == 1
    limiter.on_rate_limited(1.0, {"RateLimit-Remaining": "0"})
    assert limiter.rate == pytest.approx(9.7)


async def test_the_rate_never_drops_below_the_minimum() -> None:
    """However many 429s arrive, the limiter keeps a minimum pace."""
    clock = FakeClock()
    limiter = make(clock, min_rate=0.5)
    for second in range(30):
        clock.now = float(second * 10)
        limiter.on_rate_limited(None)
    assert limiter.rate == 0.5


async def test_without_any_limit_header_a_429_sets_the_ceiling() -> None:
    """A server that never tells its limit is probed upwards until a 429 caps the pace."""
    clock = FakeClock()
    limiter = make(clock)
    for _ in range(40):
        limiter.on_success()
    assert limiter.rate == pytest.approx(15.0)  # 5 + 40 * 0.25, still probing
    limiter.on_rate_limited(1.0)
    assert limiter.ceiling == pytest.approx(15.0 * 0.97)
    for _ in range(100):
        limiter.on_success()
    assert limiter.rate == pytest.approx(15.0 * 0.97)


async def test_remaining_zero_pauses_until_the_reset_time() -> None:
    """RateLimit-Remaining: 0 holds new requests until RateLimit-Reset-Time."""
    clock = FakeClock()
    limiter = make(clock)
    await limiter.acquire()
    reset = clock.wall() + 1.5
    limiter.observe(
        {"RateLimit-Limit": "20", "RateLimit-Remaining": "0", "RateLimit-Reset-Time": str(reset)}
    )
    times = await start_times(limiter, clock, 2)
    assert times[0] == pytest.approx(1.5)


async def test_remaining_zero_without_reset_waits_one_interval() -> None:
    """Without a usable reset time, an exhausted window costs one interval."""
    clock = FakeClock()
    limiter = make(clock, rate_limit=10.0)
    limiter.observe({"RateLimit-Remaining": "0", "RateLimit-Reset-Time": "whenever"})
    times = await start_times(limiter, clock, 1)
    assert times[0] == pytest.approx(0.1)


async def test_a_far_reset_time_is_capped() -> None:
    """A reset time far away (clock skew, odd server) pauses at most `max_reset_pause`."""
    clock = FakeClock()
    limiter = make(clock, max_reset_pause=3.0)
    limiter.observe({"RateLimit-Remaining": "0", "RateLimit-Reset-Time": "99999"})
    times = await start_times(limiter, clock, 1)
    assert times[0] == pytest.approx(3.0)


async def test_odd_headers_are_ignored() -> None:
    """Malformed RateLimit headers change nothing."""
    clock = FakeClock()
    limiter = make(clock)
    limiter.observe(
        {"RateLimit-Limit": "lots", "RateLimit-Remaining": "n/a", "RateLimit-Reset-Time": "x"}
    )
    assert limiter.rate == 5.0
    assert limiter.pauses == 0


async def test_a_pause_decided_while_waiting_applies_to_the_waiter() -> None:
    """A sender already waiting for its slot also honours a pause decided meanwhile."""
    clock = FakeClock()
    limiter = make(clock, rate_limit=1.0)
    await limiter.acquire()  # t=0; the next slot is at t=1
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)  # the waiter is now sleeping towards t=1
    limiter.on_rate_limited(3.0)  # decided at t=0 (the fake clock has not moved yet)
    await waiter
    assert clock.now == pytest.approx(3.0)


async def test_waiters_are_served_in_order() -> None:
    """Senders get their slots first come, first served."""
    clock = FakeClock()
    limiter = make(clock, rate_limit=10.0)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(8)))
    assert order == list(range(8))


def test_repr_shows_the_pace() -> None:
    """The repr tells the current rate and ceiling."""
    limiter = AdaptiveRateLimiter(rate_limit=4.0)
    assert repr(limiter) == "<AdaptiveRateLimiter rate=4.00/s ceiling=4.0>"
