"""Settings: one frozen object read from ``RCP_*`` environment variables, built once and passed in.

Nothing reads the environment at import time; ``Settings.from_env()`` is called by the CLI (and by tests with
their own mapping), validated, and handed to ``create_app`` and the workers.

The secret key signs session cookies and join links, so there is no published default (issue 13, finding 5): on one
development machine without ``RCP_SECRET_KEY``, ``from_env`` generates a random key on first start and keeps it in
the data folder (``secret_key``, mode 0600), so sessions survive a restart; production and several nodes (a Redis
URL) refuse to start without ``RCP_SECRET_KEY``, since every node must sign with the same key.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rcp.auth.passwords import PRODUCTION_ARGON2, Argon2Cost
from rcp.clients import parse_networks
from rcp.clock import Clock, SystemClock

__all__ = ["SECRET_KEY_FILE", "OidcProvider", "Settings", "SettingsError", "data_folder_secret"]

#: Name of the generated secret key in the data folder (development and test, when ``RCP_SECRET_KEY`` is unset).
SECRET_KEY_FILE = "secret_key"
#: Shortest secret key accepted where one must be given (production, several nodes).
MIN_SECRET_LENGTH = 32
#: A node trusts a checked session or bearer token this long at most (logout and revocation reach it after that).
MAX_SESSION_CACHE_S = 60.0
_GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


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


def _shared_bus(redis_url: str) -> bool:
    # "" and memory:// are the in-process bus of a single node.
    return bool(redis_url) and not redis_url.startswith("memory://")


def data_folder_secret(data_dir: Path) -> str:
    """The secret key kept in ``data_dir``, created (random, mode 0600) the first time.

    ``O_EXCL`` makes the creation atomic, so ``rcp serve`` and ``rcp worker`` started together agree on one key.
    A key file that others may read is refused rather than used: it signs every session.
    """
    path = data_dir / SECRET_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise SettingsError(f"{path} may be read by other users: run chmod 600 {path} (or set RCP_SECRET_KEY)")
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_SECRET_LENGTH:
        raise SettingsError(f"{path} holds a key shorter than {MIN_SECRET_LENGTH} characters: delete it to have a "
                            "new one generated (everyone signs in again), or set RCP_SECRET_KEY")
    return key


#: Pro Santé Connect (the ANS's OpenID Connect provider for health professionals): its scope, the level of assurance
#: it is asked for (``eidas1``), and the claims that carry the national identifier (``SubjectNameID`` in userinfo,
#: ``preferred_username`` in the ID token: "8" + the 11-digit RPPS number). A provider named ``psc`` gets these
#: unless its own variables say otherwise.
PSC_DEFAULTS: dict[str, str] = {"SCOPES": "openid scope_all", "RPPS_CLAIMS": "SubjectNameID,preferred_username",
                                "ACR_VALUES": "eidas1", "LABEL": "Pro Santé Connect", "USERINFO": "true"}
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9]{0,19}$")


@dataclass(frozen=True, kw_only=True)
class OidcProvider:
    """One OpenID Connect provider the sign-in page offers (``RCP_OIDC_PROVIDERS=psc,chu``; ``RCP_OIDC_<NAME>_*``).

    Everything else (endpoints, keys) comes from the provider's discovery document under ``issuer``
    (OpenID Connect Discovery 1.0 §4), read when the service needs it (rcp.auth.oidc).
    """

    #: Short name in addresses and variables (``psc`` -> ``/auth/oidc/psc``, ``RCP_OIDC_PSC_ISSUER``).
    name: str
    issuer: str
    client_id: str
    client_secret: str = ""
    #: What the sign-in button says ("Pro Santé Connect", "CHU de Rennes").
    label: str = ""
    scopes: tuple[str, ...] = ("openid",)
    #: Claims (ID token first, then userinfo) that may carry the person's RPPS number, in order of preference; the
    #: national identifier form "8" + RPPS (Pro Santé Connect's ``SubjectNameID``) is accepted too.
    rpps_claims: tuple[str, ...] = ()
    #: ``acr_values`` asked for (Pro Santé Connect: ``eidas1``).
    acr_values: str = ""
    #: Read the userinfo endpoint after the token (Pro Santé Connect puts ``SubjectNameID`` there).
    userinfo: bool = False

    def __post_init__(self) -> None:
        variable = f"RCP_OIDC_{self.name.upper()}"
        if not _PROVIDER_NAME.match(self.name):
            raise SettingsError(f"RCP_OIDC_PROVIDERS: a provider name is lower-case letters and digits, starting "
                                f"with a letter (got {self.name!r})")
        parts = urlsplit(self.issuer)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
            raise SettingsError(f"{variable}_ISSUER must be the provider's issuer URL, https://host[/path] "
                                f"(got {self.issuer!r})")
        if not self.client_id:
            raise SettingsError(f"{variable}_CLIENT_ID must be set: the client id the provider registered for "
                                "this service")
        if "openid" not in self.scopes:
            raise SettingsError(f"{variable}_SCOPES must include openid (got {' '.join(self.scopes)!r})")
        object.__setattr__(self, "issuer", self.issuer.rstrip("/"))
        if not self.label:
            object.__setattr__(self, "label", self.name.upper())

    @classmethod
    def from_env(cls, name: str, get: Callable[[str, str], str]) -> OidcProvider:
        """``RCP_OIDC_<NAME>_ISSUER``, ``_CLIENT_ID``, ``_CLIENT_SECRET``, ``_LABEL``, ``_SCOPES`` (space
        separated), ``_RPPS_CLAIMS`` (comma separated), ``_ACR_VALUES``, ``_USERINFO``."""
        defaults = PSC_DEFAULTS if name == "psc" else {"SCOPES": "openid", "RPPS_CLAIMS": "", "ACR_VALUES": "",
                                                       "LABEL": "", "USERINFO": "false"}

        def value(key: str) -> str:
            return get(f"OIDC_{name.upper()}_{key}", defaults.get(key, ""))

        return cls(name=name, issuer=value("ISSUER"), client_id=value("CLIENT_ID"),
                   client_secret=value("CLIENT_SECRET"), label=value("LABEL"),
                   scopes=tuple(value("SCOPES").split()), rpps_claims=_list(value("RPPS_CLAIMS")),
                   acr_values=value("ACR_VALUES"),
                   userinfo=_bool(value("USERINFO"), f"RCP_OIDC_{name.upper()}_USERINFO"))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service needs to start. Safe defaults for one machine (``make run``)."""

    env: str = "development"
    data_dir: Path = Path("data")
    database_url: str = ""
    #: Signs session cookies and join links. ``""`` outside production and without Redis: a random key for this
    #: object only (``from_env`` reads or creates the data folder's instead, which survives restarts).
    secret_key: str = ""
    #: Where browsers reach the service (scheme, host, port): its origin is the one the room socket accepts, and an
    #: ``https`` scheme turns on HSTS and Secure cookies. Production requires ``https``. The links mailed to guests
    #: are built from it, never from a request's Host header (which whoever sends the request chooses).
    public_url: str = "http://127.0.0.1:8000"
    #: ``syslog+tls://host:6514``: audit events are also sent to the hospital's SIEM (RFC 5424 over RFC 5425).
    audit_syslog_url: str = ""
    #: PEM file of the CA that signed the SIEM's certificate (``""``: the system's trusted CAs).
    audit_syslog_ca: str = ""
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
    #: ``host:port`` where the hospital's identity server sends ADT (IHE PAM) over MLLP; ``""``: no listener.
    adt_listen: str = ""
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
    #: Reverse proxies (addresses or CIDR blocks) whose ``X-Forwarded-For`` names the client (rcp.clients); from
    #: any other peer the header is ignored, so nobody chooses the address that sign-in throttling counts.
    trusted_proxies: tuple[str, ...] = ()
    #: Failed sign-ins from one address (whatever the accounts) that cost nothing before waits grow (rcp.auth.sessions):
    #: raise it when many workstations reach the service through one NAT address.
    signin_free_per_address: int = 30
    #: Cost of new password hashes (RFC 9106 argon2id); hashes made at another cost are upgraded at login.
    argon2: Argon2Cost = PRODUCTION_ARGON2
    #: The TOTP time step (RFC 6238), in seconds: 30, what authenticator apps assume, and the only value accepted
    #: in production; the test settings shorten it (as they cheapen argon2) so that their many sign-ins of one
    #: account, each needing a code not used before (rcp.auth.totp), wait at most that long (``RCP_TOTP_STEP_S``,
    #: for the tests' own service processes).
    totp_step_s: int = 30
    #: What expiries (join links, sessions, lock-out) read the time from; tests give a settable one.
    clock: Clock = field(default_factory=SystemClock, compare=False)
    #: Request bodies larger than this are refused with 413 (JSON and forms).
    max_body_bytes: int = 1 * 1024 * 1024
    #: DICOM uploads (files or a zip) may be this large.
    max_upload_bytes: int = 512 * 1024 * 1024
    #: Imports this process unpacks and checks at once, and how many more wait their turn; the next one gets 503
    #: with Retry-After (rcp.imaging.uploads.ImportGate): memory and disk stay bounded under hostile uploads.
    imports_at_once: int = 2
    imports_waiting: int = 2
    #: Run the EPR delivery worker inside ``rcp serve``.
    embedded_worker: bool = True
    #: The one mail relay of the service (``rcp.mail``): ``smtp://host:25`` (a trusted relay, no TLS),
    #: ``smtp+starttls://user:password@host:587``, ``smtps://user:password@host:465``, or ``file:///folder`` (one
    #: ``.eml`` file per mail, for development). Empty: a file drop under the data folder, except in production
    #: where mails wait in the outbox until a relay is configured.
    smtp_url: str = ""
    mail_from: str = "rcp@localhost"
    #: First delay before a failed mail is tried again (doubling each time, at most ``mail_attempts`` tries).
    mail_retry_s: float = 30.0
    mail_attempts: int = 8
    node_id: str = field(default_factory=lambda: f"node-{os.getpid()}")
    #: OpenID Connect providers offered on the sign-in page, before the local password (rcp.auth.oidc).
    oidc_providers: tuple[OidcProvider, ...] = ()
    #: Local passwords for people (``RCP_LOCAL_PASSWORDS=off``: the sign-in page and the API refuse them, and only
    #: the providers sign people in; service accounts keep their bearer tokens).
    local_passwords: bool = True
    #: Clock difference accepted between the providers and this service on ID and logout tokens (iat, exp).
    oidc_clock_skew_s: int = 120
    #: Bearer token of the Prometheus scraper (``GET /metrics``, rcp.monitoring); ``""``: metrics are off.
    metrics_token: str = ""
    #: ``text`` (one readable line per event) or ``json`` (one JSON object per line, for a log collector).
    log_format: str = "text"

    def __post_init__(self) -> None:
        if self.adt_listen and not self.adt_listen.rpartition(":")[2].isdigit():
            raise SettingsError("RCP_ADT_LISTEN must be host:port (e.g. 0.0.0.0:2575), where the hospital's "
                                "identity server sends ADT over MLLP")
        if self.env not in {"development", "production", "test"}:
            raise SettingsError(f"RCP_ENV must be development, production or test (got {self.env!r})")
        self._check_public_url()
        if self.production or self.several_nodes:
            if len(self.secret_key) < MIN_SECRET_LENGTH:
                where = "in production" if self.production else "when several nodes share Redis (RCP_REDIS_URL)"
                raise SettingsError(f"RCP_SECRET_KEY must be set to a random value of at least {MIN_SECRET_LENGTH} "
                                    f"characters {where} ({_GENERATE_HINT})")
        elif not self.secret_key:
            object.__setattr__(self, "secret_key", secrets.token_urlsafe(48))
        if self.audit_syslog_url and urlsplit(self.audit_syslog_url).scheme != "syslog+tls":
            raise SettingsError("RCP_AUDIT_SYSLOG_URL must look like syslog+tls://host:6514 (audit events leave "
                                f"only over TLS; got scheme {urlsplit(self.audit_syslog_url).scheme!r})")
        # OWASP's lowest argon2id configuration (19 MiB, t=2): anything cheaper is a test setting.
        if self.env == "production" and (self.argon2.memory_kib < 19 * 1024 or self.argon2.time_cost < 2):
            raise SettingsError(
                "RCP_ARGON2_MEMORY_KIB must be at least 19456 and RCP_ARGON2_TIME_COST at least 2 in production "
                f"(got {self.argon2.memory_kib} and {self.argon2.time_cost}); leave them unset for the defaults"
            )
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise SettingsError(f"RCP_TRUSTED_PROXIES: {exc}") from None
        if not 0 <= self.session_cache_s <= MAX_SESSION_CACHE_S:
            raise SettingsError(f"RCP_SESSION_CACHE_S must be between 0 and {MAX_SESSION_CACHE_S:.0f} (got "
                                f"{self.session_cache_s:g}): an ended session or a revoked token lives that long "
                                "on the nodes that checked it")
        if self.totp_step_s < 1 or (self.production and self.totp_step_s != 30):
            raise SettingsError(f"the TOTP time step must be 30 s in production and at least 1 s elsewhere (got "
                                f"{self.totp_step_s})")
        if self.metrics_token and len(self.metrics_token) < 24:
            raise SettingsError("RCP_METRICS_TOKEN must be at least 24 characters (the metrics describe the "
                                f"hospital's activity; {_GENERATE_HINT})")
        if self.log_format not in {"text", "json"}:
            raise SettingsError(f"RCP_LOG_FORMAT must be text or json (got {self.log_format!r})")
        if self.default_locale not in {"fr", "en"}:
            raise SettingsError(f"RCP_DEFAULT_LOCALE must be fr or en (got {self.default_locale!r})")
        if self.smtp_url and self.smtp_url.split("://", 1)[0] not in {"smtp", "smtp+starttls", "smtps", "file"}:
            raise SettingsError(f"RCP_SMTP_URL must start with smtp://, smtp+starttls://, smtps:// or file:// "
                                f"(got {self.smtp_url.split('://', 1)[0]!r}://...)")
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(self.data_dir / 'rcp.sqlite3').resolve()}")
        self._check_oidc()

    def _check_oidc(self) -> None:
        names = [p.name for p in self.oidc_providers]
        if len(set(names)) != len(names):
            raise SettingsError(f"RCP_OIDC_PROVIDERS names a provider twice ({', '.join(names)})")
        if not self.local_passwords and not self.oidc_providers:
            raise SettingsError("RCP_LOCAL_PASSWORDS=off needs at least one provider in RCP_OIDC_PROVIDERS: "
                                "nobody could sign in")
        if not 0 <= self.oidc_clock_skew_s <= 600:
            raise SettingsError(f"RCP_OIDC_CLOCK_SKEW_S must be between 0 and 600 (got {self.oidc_clock_skew_s})")
        if self.production:
            for provider in self.oidc_providers:
                if urlsplit(provider.issuer).scheme != "https":
                    raise SettingsError(f"RCP_OIDC_{provider.name.upper()}_ISSUER must be an https:// address in "
                                        "production (its keys and tokens travel over it)")

    def _check_public_url(self) -> None:
        parts = urlsplit(self.public_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise SettingsError(f"RCP_PUBLIC_URL must be http(s)://host[:port] (got {self.public_url!r})")
        if self.production and parts.scheme != "https":
            raise SettingsError("RCP_PUBLIC_URL must be an https:// address in production: the service is served "
                                "over TLS there (HSTS, Secure cookies)")
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def several_nodes(self) -> bool:
        """Nodes share rooms through Redis: they must all sign with one configured key."""
        return _shared_bus(self.redis_url)

    @property
    def tls(self) -> bool:
        """Browsers reach the service over https (behind a TLS proxy or not): HSTS and Secure cookies."""
        return urlsplit(self.public_url).scheme == "https"

    @property
    def origin(self) -> str:
        """The service's web origin (RFC 6454 §6.2 serialisation), as browsers send it in ``Origin``."""
        parts = urlsplit(self.public_url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal keeps its brackets
            host = f"[{host}]"
        default = {"http": 80, "https": 443}[parts.scheme]
        port = "" if parts.port in (None, default) else f":{parts.port}"
        return f"{parts.scheme}://{host}{port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``RCP_*`` variables (``os.environ`` unless a mapping is given) and validate them."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return env.get(f"RCP_{name}", default)

        env_name = get("ENV", "development")
        data_dir = Path(get("DATA_DIR", "data"))
        secret_key = get("SECRET_KEY")
        if not secret_key and env_name != "production" and not _shared_bus(get("REDIS_URL")):
            secret_key = data_folder_secret(data_dir)
        values: dict[str, object] = {
            "env": env_name,
            "data_dir": data_dir,
            "database_url": get("DATABASE_URL"),
            "secret_key": secret_key,
            "public_url": get("PUBLIC_URL", "http://127.0.0.1:8000"),
            "audit_syslog_url": get("AUDIT_SYSLOG_URL"),
            "audit_syslog_ca": get("AUDIT_SYSLOG_CA"),
            "pacs_url": get("PACS_URL"),
            "pacs_username": get("PACS_USERNAME"),
            "pacs_password": get("PACS_PASSWORD"),
            "pacs_token": get("PACS_TOKEN"),
            "redis_url": get("REDIS_URL"),
            "epr_receivers": _list(get("EPR_RECEIVERS")),
            "epr_fhir_token": get("EPR_FHIR_TOKEN"),
            "adt_listen": get("ADT_LISTEN"),
            "ice_servers": _list(get("ICE_SERVERS")),
            "ice_username": get("ICE_USERNAME"),
            "ice_credential": get("ICE_CREDENTIAL"),
            "default_timezone": get("DEFAULT_TIMEZONE", "Europe/Paris"),
            "default_locale": get("DEFAULT_LOCALE", "fr"),
            "session_idle_s": _int(get("SESSION_IDLE_S", "1800"), "RCP_SESSION_IDLE_S", minimum=60),
            "session_absolute_s": _int(get("SESSION_ABSOLUTE_S", "43200"), "RCP_SESSION_ABSOLUTE_S", minimum=60),
            "session_cache_s": float(_int(get("SESSION_CACHE_S", "5"), "RCP_SESSION_CACHE_S")),
            "trusted_proxies": _list(get("TRUSTED_PROXIES")),
            "signin_free_per_address": _int(get("SIGNIN_FREE_PER_ADDRESS", "30"), "RCP_SIGNIN_FREE_PER_ADDRESS",
                                            minimum=1),
            "max_body_bytes": _int(get("MAX_BODY_BYTES", str(1024 * 1024)), "RCP_MAX_BODY_BYTES", minimum=1024),
            "max_upload_bytes": _int(
                get("MAX_UPLOAD_BYTES", str(512 * 1024 * 1024)), "RCP_MAX_UPLOAD_BYTES", minimum=1024
            ),
            "imports_at_once": _int(get("IMPORTS_AT_ONCE", "2"), "RCP_IMPORTS_AT_ONCE", minimum=1),
            "imports_waiting": _int(get("IMPORTS_WAITING", "2"), "RCP_IMPORTS_WAITING"),
            "argon2": _argon2(get),
            "totp_step_s": _int(get("TOTP_STEP_S", "30"), "RCP_TOTP_STEP_S", minimum=1),
            "embedded_worker": _bool(get("EMBEDDED_WORKER", "true"), "RCP_EMBEDDED_WORKER"),
            "smtp_url": get("SMTP_URL"),
            "mail_from": get("MAIL_FROM", "rcp@localhost"),
        }
        if get("NODE_ID"):
            values["node_id"] = get("NODE_ID")
        values["oidc_providers"] = tuple(OidcProvider.from_env(name.lower(), get)
                                         for name in _list(get("OIDC_PROVIDERS")))
        values["local_passwords"] = _bool(get("LOCAL_PASSWORDS", "on"), "RCP_LOCAL_PASSWORDS")
        values["oidc_clock_skew_s"] = _int(get("OIDC_CLOCK_SKEW_S", "120"), "RCP_OIDC_CLOCK_SKEW_S")
        values["metrics_token"] = get("METRICS_TOKEN")
        values["log_format"] = get("LOG_FORMAT", "text")
        return cls(**values)  # type: ignore[arg-type]
