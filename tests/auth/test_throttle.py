"""The password throttle's arithmetic, on a clock the test moves (no sleeping)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import pytest

from rcp.auth.throttle import Backoff, MemoryThrottle, RedisThrottle, Throttled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def waits(throttle: MemoryThrottle, key: str) -> int | None:
    """The Retry-After of an attempt now, or None if it was let through (and counted)."""
    try:
        throttle.begin_now(key)
    except Throttled as exc:
        return exc.retry_after_s
    return None


def test_three_free_failures_then_growing_waits_up_to_the_cap() -> None:
    clock = Clock()
    throttle = MemoryThrottle(Backoff(free=3, first_s=1, cap_s=8), clock=clock)
    assert [waits(throttle, "u1") for _ in range(3)] == [None, None, None]
    seen = []
    for _ in range(6):
        wait = waits(throttle, "u1")
        assert wait is not None
        seen.append(wait)
        clock.now += wait
        assert waits(throttle, "u1") is None  # after the wait, one more check (which fails again)
    assert seen == [1, 2, 4, 8, 8, 8]
    assert waits(throttle, "u2") is None  # other keys are not affected


def test_a_refused_attempt_does_not_lengthen_the_wait_and_success_clears() -> None:
    clock = Clock()
    throttle = MemoryThrottle(Backoff(free=1, first_s=10), clock=clock)
    assert waits(throttle, "k") is None
    assert [waits(throttle, "k") for _ in range(5)] == [10, 10, 10, 10, 10]
    clock.now += 10
    assert waits(throttle, "k") is None


@pytest.mark.asyncio(loop_scope="session")
async def test_success_and_a_long_silence_start_afresh() -> None:
    clock = Clock()
    throttle = MemoryThrottle(Backoff(free=1, first_s=5, forget_s=600), clock=clock)
    await throttle.begin("k")
    with pytest.raises(Throttled):
        await throttle.begin("k")
    await throttle.succeeded("k")
    await throttle.begin("k")
    clock.now += 601
    await throttle.begin("k")  # forgotten: counted as the first failure again
    with pytest.raises(Throttled) as exc:
        await throttle.begin("k")
    assert exc.value.status == 429 and exc.value.as_json()["retry_after_s"] == 5


def test_the_table_is_bounded() -> None:
    clock = Clock()
    throttle = MemoryThrottle(clock=clock, max_keys=10)
    for i in range(50):
        throttle.begin_now(f"k{i}")
        clock.now += 1
    assert len(throttle._entries) <= 10


@pytest.mark.redis
@pytest.mark.asyncio(loop_scope="session")
async def test_nodes_share_one_count_in_redis() -> None:
    """Two nodes on one Redis: guesses spread over both, and fired in parallel, get three checks in all."""
    clock = Clock()
    prefix = f"rcp:test-throttle:{secrets.token_hex(4)}:"
    url = "redis://127.0.0.1:6379/0"
    async with RedisThrottle(url, clock=clock, prefix=prefix) as a, RedisThrottle(url, clock=clock, prefix=prefix) as b:
        outcomes = await asyncio.gather(*((a if i % 2 else b).begin("user:7") for i in range(12)),
                                        return_exceptions=True)
        assert sum(o is None for o in outcomes) == 3
        refused = [o for o in outcomes if isinstance(o, Throttled)]
        assert len(refused) == 9 and {o.retry_after_s for o in refused} == {1}
        clock.now += 1
        await b.begin("user:7")  # the wait is over: one more check (which fails: now 2 s)
        with pytest.raises(Throttled) as exc:
            await a.begin("user:7")
        assert exc.value.retry_after_s == 2
        await a.succeeded("user:7")
        await b.begin("user:7")  # a success on one node clears the count for all
        await a.succeeded("user:7")


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
@pytest.mark.asyncio(loop_scope="session")
async def test_a_refund_takes_back_one_attempt_and_a_backoff_per_key(store: str) -> None:
    """Sign-in's per-address key: a success takes back its own attempt (the failures stay counted), and the key
    has a backoff of its own (more free failures than the throttle's default); a clock stepped back never turns a
    free attempt into a wait."""
    clock = Clock()
    loose = Backoff(free=5)
    prefix = f"rcp:test-throttle:{secrets.token_hex(4)}:"
    async with contextlib.AsyncExitStack() as stack:
        throttle: MemoryThrottle | RedisThrottle = MemoryThrottle(clock=clock) if store == "memory" else \
            await stack.enter_async_context(RedisThrottle("redis://127.0.0.1:6379/0", clock=clock, prefix=prefix))
        for _ in range(3):
            await throttle.begin("address", loose)  # three failures, under the default's limit here
        for _ in range(10):
            await throttle.begin("address", loose)  # a sign-in that succeeds...
            await throttle.refund("address")  # ...takes back its own count only
        clock.now -= 30  # stepped back: still no wait, since none was imposed
        await throttle.begin("address", loose)
        await throttle.begin("address", loose)  # the fifth failure: now a wait
        with pytest.raises(Throttled):
            await throttle.begin("address", loose)
