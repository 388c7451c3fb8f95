"""Password hashing with argon2id (RFC 9106) — the hash carries its own parameters, so they can be raised later.

The cost is a setting (``Settings.argon2``): production keeps argon2-cffi's RFC 9106 "low memory" profile
(t=3, 64 MiB, p=4), the test suite uses the smallest legal cost so that its hundreds of sign-ins stay cheap.
A hash made at another cost still verifies (its parameters are in it); ``needs_rehash`` tells the login to
upgrade it to the configured cost.

>>> cheap = Argon2Cost(time_cost=1, memory_kib=8, parallelism=1)
>>> digest = hash_password("correct horse battery", cheap)
>>> digest.startswith("$argon2id$v=19$m=8,t=1,p=1$"), verify_password(digest, "correct horse battery", cheap)
(True, True)
>>> needs_rehash(digest, Argon2Cost())
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MIN_PASSWORD_LENGTH", "PRODUCTION_ARGON2", "Argon2Cost", "hash_password", "needs_rehash",
           "verify_password"]

MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class Argon2Cost:
    """Argon2id parameters (RFC 9106 section 3.1): passes, memory in KiB, lanes. Defaults: RFC 9106's second
    recommended option (t=3, m=64 MiB), as argon2-cffi ships it, with four lanes."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1:
            raise ValueError(f"argon2 time cost and parallelism must be at least 1 (got t={self.time_cost}, "
                             f"p={self.parallelism})")
        # RFC 9106 section 3.1: the memory is at least 8 KiB per lane.
        if self.memory_kib < 8 * self.parallelism:
            raise ValueError(f"argon2 memory must be at least 8 KiB per lane: {8 * self.parallelism} KiB for "
                             f"parallelism {self.parallelism} (got {self.memory_kib})")


PRODUCTION_ARGON2 = Argon2Cost()


@lru_cache(maxsize=8)
def _hasher(cost: Argon2Cost) -> PasswordHasher:
    return PasswordHasher(time_cost=cost.time_cost, memory_cost=cost.memory_kib, parallelism=cost.parallelism)


@lru_cache(maxsize=8)
def _dummy_hash(cost: Argon2Cost) -> str:
    """Verifying against this keeps the timing of "unknown user" equal to "wrong password" at this cost."""
    return _hasher(cost).hash("not-a-real-password-but-same-cost")


def hash_password(password: str, cost: Argon2Cost = PRODUCTION_ARGON2) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher(cost).hash(password)


def verify_password(password_hash: str, password: str, cost: Argon2Cost = PRODUCTION_ARGON2) -> bool:
    """Constant-cost check (``cost`` sets the cost of checking an empty hash); an empty or broken hash never
    matches."""
    try:
        return _hasher(cost).verify(password_hash or _dummy_hash(cost), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str, cost: Argon2Cost = PRODUCTION_ARGON2) -> bool:
    return _hasher(cost).check_needs_rehash(password_hash)
