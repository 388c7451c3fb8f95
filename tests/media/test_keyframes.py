"""Keyframe-request coalescing: at most one upstream PLI per publisher per 500 ms, none lost."""

from __future__ import annotations

import itertools

from media.keyframes import KeyframeThrottle


def test_burst_of_requests_from_eleven_subscribers_gives_two_plis() -> None:
    throttle = KeyframeThrottle(interval=0.5)
    decisions = [throttle.request(100.0 + i * 0.01) for i in range(11)]
    assert decisions[0] == 0.0  # sent at once
    assert (
        decisions[1] is not None and abs(decisions[1] - 0.49) < 1e-9
    )  # one deferred to the end of the window
    assert decisions[2:] == [None] * 9  # merged into the deferred one
    throttle.fired(100.5)
    assert throttle.sent == 2 and throttle.merged == 9


def test_spaced_requests_all_go_out_immediately() -> None:
    throttle = KeyframeThrottle(interval=0.5)
    assert [throttle.request(t) for t in (0.0, 0.5, 1.2, 3.0)] == [0.0, 0.0, 0.0, 0.0]


def test_no_more_than_one_per_interval_over_a_long_storm() -> None:
    throttle = KeyframeThrottle(interval=0.5)
    sent_at: list[float] = []
    pending_at: float | None = None
    for step in range(1000):  # a request every 10 ms for 10 s
        now = step * 0.01
        if pending_at is not None and now >= pending_at:
            throttle.fired(pending_at)
            sent_at.append(pending_at)
            pending_at = None
        delay = throttle.request(now)
        if delay == 0.0:
            sent_at.append(now)
        elif delay is not None:
            pending_at = now + delay
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert min(gaps) >= 0.5 - 1e-9
    assert len(sent_at) >= 19
