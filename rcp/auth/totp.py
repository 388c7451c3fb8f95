"""The second factor of local accounts: a TOTP authenticator (RFC 6238) and single-use recovery codes.

French health-data rules expect strong authentication for remote access to patient data; a password alone is one
factor. Every local account needs a second one by default (``User.second_factor_required``): an authenticator app
enrolled by QR code, and ten recovery codes for the day the phone is lost. An administrator may relax it for an
account that never signs (that account then cannot sign: rcp.auth.reauth).

The rules, and where they come from:

- codes are RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s steps: what every authenticator app reads from an
  ``otpauth://`` URI), accepted one step either side of the server's clock (RFC 6238 §5.2: "at most one time step
  is allowed as the network delay"); the test settings shorten the step, as they cheapen argon2;
- a code is accepted once: its time step must be later than the last one accepted for the account (RFC 6238 §5.2:
  "the verifier MUST NOT accept the second attempt of the same OTP"), so a code read over a shoulder or relayed
  by a phishing proxy is refused once used;
- wrong codes go through the password throttle (rcp.auth.throttle, key ``second-factor:user:N``), counted before
  the code is checked, and every failure is audited (DCM 110114, outcome 4; a replay as 110113 Security Alert);
- the secret is encrypted at rest with AES-256-GCM (:class:`SecretBox`) under a key derived by HKDF-SHA256 from
  the service's secret key (``RCP_SECRET_KEY`` or the data folder's ``secret_key`` file: rcp.config), the user's id
  as associated data, so a row copied onto another account does not decrypt. **Key rotation**: there is none —
  a new secret key leaves every stored TOTP secret undecryptable (the box says so, naming the account), and each
  account's second factor must be reset by an administrator and enrolled again. Keep the key as long as the
  database (back them up together);
- recovery codes are ``xxxx-xxxxxxxx`` (lower-case base32): the first four characters select the row in clear, the
  whole code is kept as an argon2id hash (rcp.auth.passwords, in the thread pool), and each is used once.

>>> box = SecretBox("k" * 48)
>>> sealed = box.seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", user_id=7)
>>> sealed.startswith("v1:"), "JBSWY3DPEH" in sealed, box.open(sealed, user_id=7)
(True, False, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP')
>>> from datetime import UTC, datetime
>>> at = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
>>> code = code_at("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", at)
>>> matching_step("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", code, at) == int(at.timestamp()) // 30
True
>>> matching_step("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", code, at, after=int(at.timestamp()) // 30) is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlmodel import col, delete, select
from starlette.concurrency import run_in_threadpool

from rcp.auth import audit
from rcp.auth.models import RecoveryCode, TotpCredential, User
from rcp.auth.passwords import Argon2Cost, hash_password, verify_password
from rcp.auth.throttle import Throttle, Throttled
from rcp.clock import utcnow

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession
    from starlette.requests import HTTPConnection

__all__ = [
    "DIGITS",
    "RECOVERY_CODES",
    "STEP_S",
    "AccountActor",
    "SecondFactorError",
    "SecondFactorRefused",
    "SecretBox",
    "UnreadableSecret",
    "begin_enrolment",
    "box_for",
    "check_second_factor",
    "code_at",
    "confirm_enrolment",
    "enrol_confirmed",
    "enrolment_state",
    "matching_step",
    "new_recovery_codes",
    "provisioning_uri",
    "qr_data_uri",
    "reset_second_factor",
]

logger = logging.getLogger(__name__)

#: RFC 6238's recommended time step, which authenticator apps assume.
STEP_S = 30
DIGITS = 6
#: How far the client's clock may be from ours: one 30 s step either way (RFC 6238 §5.2), whatever the step.
DRIFT_S = 30
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/1/o/0: read off paper


class SecondFactorError(Exception):
    """Base of this module's errors."""


class UnreadableSecret(SecondFactorError):
    """The stored secret does not decrypt: the service's secret key changed since enrolment (no rotation)."""


class SecondFactorRefused(SecondFactorError):
    """A wrong, reused or missing code; ``reason`` goes to the audit trail, never to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SecretBox:
    """AES-256-GCM (NIST SP 800-38D) over TOTP secrets, keyed by HKDF-SHA256 (RFC 5869) of the service's secret key.

    Stored form: ``v1:`` + base64url(12-byte random nonce + ciphertext + tag); the user id is associated data.
    """

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("the service's secret key is empty: TOTP secrets cannot be encrypted")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"rcp.auth.totp",
                   info=b"TOTP secrets at rest, v1").derive(secret_key.encode())
        self._aead = AESGCM(key)

    def seal(self, secret: str, *, user_id: int) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode("ascii"), f"user:{user_id}".encode())
        return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, *, user_id: int) -> str:
        if not stored.startswith("v1:"):
            raise UnreadableSecret(f"user {user_id}: the stored TOTP secret is not in a known format")
        raw = base64.urlsafe_b64decode(stored[3:].encode("ascii"))
        try:
            return self._aead.decrypt(raw[:12], raw[12:], f"user:{user_id}".encode()).decode("ascii")
        except InvalidTag:
            raise UnreadableSecret(
                f"user {user_id}: the TOTP secret does not decrypt (the service's secret key changed since "
                "enrolment?): reset this account's second factor and enrol again") from None


# --- RFC 6238 -----------------------------------------------------------------------------------------------------


def code_at(secret: str, at: datetime, *, step_s: int = STEP_S) -> str:
    """The code an authenticator shows at ``at``."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=step_s).generate_otp(int(at.timestamp()) // step_s)


def matching_step(secret: str, code: str, at: datetime, *, step_s: int = STEP_S, after: int = -1) -> int | None:
    """The time step whose code is ``code``, within :data:`DRIFT_S` of ``at`` and later than ``after`` (the last
    step accepted: a code is used once), else None. Compared in constant time."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=step_s)
    now = int(at.timestamp()) // step_s
    spread = max(1, math.ceil(DRIFT_S / step_s))
    found = None
    for step in range(now - spread, now + spread + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and step > after and found is None:
            found = step
    return found


def provisioning_uri(secret: str, *, account: str, public_url: str, step_s: int = STEP_S) -> str:
    """The ``otpauth://totp/...`` URI (Key Uri Format) an authenticator app reads from the QR code."""
    issuer = f"RCP {urlsplit(public_url).hostname or ''}".strip()
    return pyotp.TOTP(secret, digits=DIGITS, interval=step_s).provisioning_uri(name=account, issuer_name=issuer)


def qr_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an SVG ``data:`` URI, drawn here (segno): the secret never leaves the service."""
    import segno

    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def new_recovery_codes() -> list[str]:
    """Ten fresh codes, ``abcd-efghjkmn`` (4 + 8 characters, 60 bits)."""
    def one() -> str:
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
        return f"{chars[:4]}-{chars[4:]}"
    return [one() for _ in range(RECOVERY_CODES)]


def _normalised_recovery(code: str) -> str:
    return code.strip().lower().replace(" ", "").replace("-", "")


# --- enrolment ----------------------------------------------------------------------------------------------------


async def enrolment_state(session: AsyncSession, user_id: int) -> str:
    """``"active"`` (confirmed), ``"pending"`` (a secret shown, not yet confirmed) or ``"none"``."""
    row = await session.get(TotpCredential, user_id)
    if row is None:
        return "none"
    return "active" if row.confirmed_at is not None else "pending"


async def begin_enrolment(session: AsyncSession, box: SecretBox, user_id: int) -> str:
    """The secret to show for enrolment: the pending one if the page is shown again, else a new one (160 bits).
    Refused (ValueError) once a second factor is active: an administrator resets it first."""
    row = await session.get(TotpCredential, user_id)
    if row is not None and row.confirmed_at is not None:
        raise ValueError(f"user {user_id} already has an active second factor")
    if row is not None:
        try:
            return box.open(row.secret_enc, user_id=user_id)
        except UnreadableSecret:
            await session.delete(row)
            await session.flush()
    secret = pyotp.random_base32(32)
    session.add(TotpCredential(user_id=user_id, secret_enc=box.seal(secret, user_id=user_id)))
    await session.flush()
    return secret


async def _store_recovery_codes(session: AsyncSession, user_id: int, codes: list[str], cost: Argon2Cost) -> None:
    await session.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
    for code in codes:
        digest = await run_in_threadpool(hash_password, _normalised_recovery(code), cost)
        session.add(RecoveryCode(user_id=user_id, selector=_normalised_recovery(code)[:4], code_hash=digest))


async def confirm_enrolment(session: AsyncSession, box: SecretBox, user_id: int, code: str, *, at: datetime,
                            step_s: int, cost: Argon2Cost) -> list[str] | None:
    """Activate the pending secret if ``code`` is its current code: returns the ten recovery codes (shown once,
    stored hashed), or None for a wrong code."""
    row = await session.get(TotpCredential, user_id)
    if row is None or row.confirmed_at is not None:
        return None
    step = matching_step(box.open(row.secret_enc, user_id=user_id), code, at, step_s=step_s)
    if step is None:
        return None
    row.confirmed_at = utcnow()
    row.last_step = step
    session.add(row)
    codes = new_recovery_codes()
    await _store_recovery_codes(session, user_id, codes, cost)
    return codes


async def enrol_confirmed(session: AsyncSession, box: SecretBox, user_id: int, secret: str, *,
                          recovery_codes: list[str] | None = None, cost: Argon2Cost | None = None) -> None:
    """An active second factor with a known secret, without the confirmation step: for the demo accounts (their
    secret is printed by ``rcp demo``) and the tests' factories."""
    await session.exec(delete(TotpCredential).where(col(TotpCredential.user_id) == user_id))
    session.add(TotpCredential(user_id=user_id, secret_enc=box.seal(secret, user_id=user_id), confirmed_at=utcnow()))
    if recovery_codes:
        await _store_recovery_codes(session, user_id, recovery_codes, cost or Argon2Cost())
    await session.flush()


async def reset_second_factor(session: AsyncSession, user_id: int) -> None:
    """Forget the account's authenticator and recovery codes: it enrols again at its next sign-in."""
    await session.exec(delete(TotpCredential).where(col(TotpCredential.user_id) == user_id))
    await session.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))


# --- checking a code ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """What proved the second factor: ``"totp"`` or ``"recovery code"`` (for the audit trail)."""

    kind: str


async def _check_recovery(session: AsyncSession, user_id: int, code: str, cost: Argon2Cost) -> bool:
    plain = _normalised_recovery(code)
    if len(plain) != 12:
        return False
    rows = (await session.exec(select(RecoveryCode).where(
        RecoveryCode.user_id == user_id, RecoveryCode.selector == plain[:4], col(RecoveryCode.used_at).is_(None)))).all()
    for row in rows:
        if await run_in_threadpool(verify_password, row.code_hash, plain, cost):
            row.used_at = utcnow()
            session.add(row)
            return True
    return False


async def check_second_factor(session: AsyncSession, *, box: SecretBox, user: User, code: str, at: datetime,
                              step_s: int, cost: Argon2Cost, throttle: Throttle, conn: HTTPConnection | None,
                              source: str, act: str) -> Proof:
    """Check ``code`` (a TOTP code or a recovery code) for ``user``'s active second factor, in ``session``.

    Raises :class:`~rcp.auth.throttle.Throttled` (nothing checked) while the account must wait, else
    :class:`SecondFactorRefused`. Failures are audited and *committed* here (the caller's rollback must not erase
    the trace); a success marks the step or the recovery code used in the caller's unit of work.
    """
    assert user.id is not None
    key = f"second-factor:user:{user.id}"
    who: Any = AccountActor(user)
    try:
        await throttle.begin(key)
    except Throttled:
        await audit.record(session, event="security_alert", action="E", outcome=8, request=conn, user=who,
                           source=source, what=f"{act}: refused, too many wrong second-factor codes")
        await session.commit()
        raise
    row = await session.get(TotpCredential, user.id)
    if row is None or row.confirmed_at is None:
        await _refuse(session, conn, who, source, f"{act}: no second factor enrolled")
        raise SecondFactorRefused("not enrolled")
    secret = box.open(row.secret_enc, user_id=user.id)
    step = matching_step(secret, code, at, step_s=step_s, after=row.last_step)
    if step is not None:
        row.last_step = step
        session.add(row)
        await throttle.succeeded(key)
        return Proof("totp")
    if matching_step(secret, code, at, step_s=step_s) is not None:
        await audit.record(session, event="security_alert", action="E", outcome=4, request=conn, user=who,
                           source=source, what=f"{act}: second-factor code already used (replay refused)")
        await session.commit()
        raise SecondFactorRefused("replayed code")
    if await _check_recovery(session, user.id, code, cost):
        await throttle.succeeded(key)
        return Proof("recovery code")
    await _refuse(session, conn, who, source, f"{act}: wrong second-factor code")
    raise SecondFactorRefused("wrong code")


async def _refuse(session: AsyncSession, conn: HTTPConnection | None, who: Any, source: str, what: str) -> None:
    logger.info("second factor refused (%s)", what)
    await audit.record(session, event="user_authentication", action="E", outcome=4, request=conn, user=who,
                       source=source, what=what)
    await session.commit()


@dataclass(frozen=True)
class AccountActor:
    """Names the account in the audit trail before a session exists (sign-in's second step)."""

    user: User

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def id(self) -> int | None:
        return self.user.id

    @property
    def username(self) -> str:
        return self.user.username


def digest_of(value: str) -> str:
    """A short digest for fingerprints (never the value itself)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@lru_cache(maxsize=4)
def _box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key)


def box_for(settings: Any) -> SecretBox:
    """The app's :class:`SecretBox` (the key derivation runs once per secret key)."""
    return _box(settings.secret_key)
