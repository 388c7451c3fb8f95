"""Settings: one frozen object read from ``RCP_*`` environment variables, built once and passed in.

Nothing reads the environment at import time; ``Settings.from_env()`` is called by the CLI (and by tests with
their own mapping), validated, and handed to ``create_app`` and the workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rcp.auth.passwords import PRODUCTION_ARGON2, Argon2Cost
from rcp.clock import Clock, SystemClock

__all__ = ["DEFAULT_SECRET", "Settings", "SettingsError"]

#: The development secret. ``RCP_ENV=production`` refuses to start with it.
DEFAULT_SECRET = "dev-insecure-secret-change-me"


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the variable and what to do."""


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be true or false (got {value!r})")


def _int(value: str, name: str, *, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number (got {value!r})") from None
    if number < minimum:
        raise SettingsError(f"{name} must be at least {minimum} (got {number})")
    return number


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.replace("\n", ",").split(",") if part.strip())


def _argon2(get: Callable[[str, str], str]) -> Argon2Cost:
    default = PRODUCTION_ARGON2
    try:
        return Argon2Cost(
            time_cost=_int(get("ARGON2_TIME_COST", str(default.time_cost)), "RCP_ARGON2_TIME_COST", minimum=1),
            memory_kib=_int(get("ARGON2_MEMORY_KIB", str(default.memory_kib)), "RCP_ARGON2_MEMORY_KIB", minimum=8),
            parallelism=_int(get("ARGON2_PARALLELISM", str(default.parallelism)), "RCP_ARGON2_PARALLELISM",
                             minimum=1),
        )
    except ValueError as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"RCP_ARGON2_*: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service needs to start. Safe defaults for one machine (``make run``)."""

    env: str = "development"
    data_dir: Path = Path("data")
    database_url: str = ""
    secret_key: str = DEFAULT_SECRET
    #: ``""`` means the local archive in the data folder; ``http(s)://host/dicom-web`` a DICOMweb PACS.
    pacs_url: str = ""
    pacs_username: str = ""
    pacs_password: str = ""
    pacs_token: str = ""
    #: ``""`` or ``memory://`` for the in-process room bus; ``redis://host:port/db`` for several nodes.
    redis_url: str = ""
    #: EPR receivers by URL: ``file:///folder``, ``fhir+https://host/fhir``, ``mllp://host:port``.
    epr_receivers: tuple[str, ...] = ()
    #: Bearer token for FHIR receivers that do not carry one in their URL.
    epr_fhir_token: str = ""
    #: STUN/TURN servers handed to browsers, e.g. ``stun:stun.example.org:3478``.
    ice_servers: tuple[str, ...] = ()
    ice_username: str = ""
    ice_credential: str = ""
    #: Time zone used when a board names none (meetings are shown in their board's zone).
    default_timezone: str = "Europe/Paris"
    default_locale: str = "fr"
    #: Sessions end after this much inactivity, and in any case after ``session_absolute_s``.
    session_idle_s: int = 30 * 60
    session_absolute_s: int = 12 * 3600
    #: How long a node trusts a checked session without asking the database again (0 = always ask).
    session_cache_s: float = 5.0
    #: Failed logins before an account is locked, and for how long.
    lockout_attempts: int = 5
    lockout_s: int = 15 * 60
    #: Cost of new password hashes (RFC 9106 argon2id); hashes made at another cost are upgraded at login.
    argon2: Argon2Cost = PRODUCTION_ARGON2
    #: What expiries (join links, sessions, lock-out) read the time from; tests give a settable one.
    clock: Clock = field(default_factory=SystemClock, compare=False)
    #: Request bodies larger than this are refused with 413 (JSON and forms).
    max_body_bytes: int = 1 * 1024 * 1024
    #: DICOM uploads (files or a zip) may be this large.
    max_upload_bytes: int = 512 * 1024 * 1024
    #: Cookie ``Secure`` flag; also set whenever the request arrives over https.
    secure_cookies: bool = False
    #: Run the EPR delivery worker inside ``rcp serve``.
    embedded_worker: bool = True
    node_id: str = field(default_factory=lambda: f"node-{os.getpid()}")

    def __post_init__(self) -> None:
        if self.env not in {"development", "production", "test"}:
            raise SettingsError(f"RCP_ENV must be development, production or test (got {self.env!r})")
        if self.env == "production" and (self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32):
            raise SettingsError(
                "RCP_SECRET_KEY must be set to a random value of at least 32 characters in production "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        # OWASP's lowest argon2id configuration (19 MiB, t=2): anything cheaper is a test setting.
        if self.env == "production" and (self.argon2.memory_kib < 19 * 1024 or self.argon2.time_cost < 2):
            raise SettingsError(
                "RCP_ARGON2_MEMORY_KIB must be at least 19456 and RCP_ARGON2_TIME_COST at least 2 in production "
                f"(got {self.argon2.memory_kib} and {self.argon2.time_cost}); leave them unset for the defaults"
            )
        if self.default_locale not in {"fr", "en"}:
            raise SettingsError(f"RCP_DEFAULT_LOCALE must be fr or en (got {self.default_locale!r})")
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(self.data_dir / 'rcp.sqlite3').resolve()}")

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``RCP_*`` variables (``os.environ`` unless a mapping is given) and validate them."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return env.get(f"RCP_{name}", default)

        values: dict[str, object] = {
            "env": get("ENV", "development"),
            "data_dir": Path(get("DATA_DIR", "data")),
            "database_url": get("DATABASE_URL"),
            "secret_key": get("SECRET_KEY", DEFAULT_SECRET),
            "pacs_url": get("PACS_URL"),
            "pacs_username": get("PACS_USERNAME"),
            "pacs_password": get("PACS_PASSWORD"),
            "pacs_token": get("PACS_TOKEN"),
            "redis_url": get("REDIS_URL"),
            "epr_receivers": _list(get("EPR_RECEIVERS")),
            "epr_fhir_token": get("EPR_FHIR_TOKEN"),
            "ice_servers": _list(get("ICE_SERVERS")),
            "ice_username": get("ICE_USERNAME"),
            "ice_credential": get("ICE_CREDENTIAL"),
            "default_timezone": get("DEFAULT_TIMEZONE", "Europe/Paris"),
            "default_locale": get("DEFAULT_LOCALE", "fr"),
            "session_idle_s": _int(get("SESSION_IDLE_S", "1800"), "RCP_SESSION_IDLE_S", minimum=60),
            "session_absolute_s": _int(get("SESSION_ABSOLUTE_S", "43200"), "RCP_SESSION_ABSOLUTE_S", minimum=60),
            "session_cache_s": float(_int(get("SESSION_CACHE_S", "5"), "RCP_SESSION_CACHE_S")),
            "lockout_attempts": _int(get("LOCKOUT_ATTEMPTS", "5"), "RCP_LOCKOUT_ATTEMPTS", minimum=1),
            "lockout_s": _int(get("LOCKOUT_S", "900"), "RCP_LOCKOUT_S", minimum=1),
            "max_body_bytes": _int(get("MAX_BODY_BYTES", str(1024 * 1024)), "RCP_MAX_BODY_BYTES", minimum=1024),
            "max_upload_bytes": _int(
                get("MAX_UPLOAD_BYTES", str(512 * 1024 * 1024)), "RCP_MAX_UPLOAD_BYTES", minimum=1024
            ),
            "argon2": _argon2(get),
            "secure_cookies": _bool(get("SECURE_COOKIES", "false"), "RCP_SECURE_COOKIES"),
            "embedded_worker": _bool(get("EMBEDDED_WORKER", "true"), "RCP_EMBEDDED_WORKER"),
        }
        if get("NODE_ID"):
            values["node_id"] = get("NODE_ID")
        return cls(**values)  # type: ignore[arg-type]
