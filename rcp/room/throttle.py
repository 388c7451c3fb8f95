"""A token bucket per client: a participant sending too fast is slowed down, the room is not.

Pure arithmetic over a monotonic ``now`` passed in, so it is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenBucket"]


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; each message takes one."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(
                f"TokenBucket needs rate > 0 and burst >= 1 (got rate={self.rate}, burst={self.burst})"
            )
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float, cost: float = 1.0) -> bool:
        """True if the message may pass at ``now`` (seconds, monotonic)."""
        elapsed = max(0.0, now - self.updated)
        self.updated = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
