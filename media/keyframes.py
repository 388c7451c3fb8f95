"""Coalescing of keyframe requests: at most one upstream request per publisher per interval.

Why: every subscriber that joins, resumes a paused video or loses packets asks for a keyframe (RTCP PLI, RFC 4585
section 6.3.1, or FIR, RFC 5104 section 4.3.1). In a room of twelve, eleven subscribers asking at once would make
the publisher send eleven keyframes (each several times larger than a delta frame) and saturate its uplink. One
keyframe serves every subscriber, so requests arriving within ``interval`` of the last one sent are merged into a
single deferred request at the end of the interval — none is lost, none is duplicated.

Pure logic with an injected clock; the asyncio timer lives with the forwarder that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KEYFRAME_INTERVAL_S", "KeyframeThrottle"]

#: Issue 5: "at most one upstream request per publisher per 500 ms".
KEYFRAME_INTERVAL_S = 0.5


@dataclass
class KeyframeThrottle:
    """Decides, for each keyframe request, whether to send it now, later, or fold it into a pending one.

    >>> throttle = KeyframeThrottle(interval=0.5)
    >>> throttle.request(10.0)   # first request goes out at once
    0.0
    >>> round(throttle.request(10.1), 3)   # within 500 ms: deferred to 10.5
    0.4
    >>> throttle.request(10.2) is None   # already pending: merged
    True
    >>> throttle.fired(10.5)     # the deferred request went out
    """

    interval: float = KEYFRAME_INTERVAL_S
    last_sent: float | None = None
    pending: bool = False
    sent: int = 0
    merged: int = 0

    def request(self, now: float) -> float | None:
        """Register a request at ``now``; return the delay after which to send (0 = now), or None if merged."""
        if self.pending:
            self.merged += 1
            return None
        if self.last_sent is None or now - self.last_sent >= self.interval:
            self.last_sent = now
            self.sent += 1
            return 0.0
        self.pending = True
        return max(0.0, self.last_sent + self.interval - now)

    def fired(self, now: float) -> None:
        """The deferred request was sent at ``now``."""
        self.pending = False
        self.last_sent = now
        self.sent += 1
