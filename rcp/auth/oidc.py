"""The relying party's side of OpenID Connect: discovery, keys, the code flow with PKCE, and token verification.

One :class:`OidcClient` per service (``app.state.oidc``) talks to every configured provider
(``Settings.oidc_providers``) over one ``httpx.AsyncClient``. What it checks, and where the rule comes from:

- **Discovery** (OpenID Connect Discovery 1.0 §4.3): the document's ``issuer`` must equal the configured issuer,
  or a provider could speak for another; it is kept for :data:`METADATA_FOR` and its ``jwks_uri`` read with it.
- **Authorization request** (OIDC Core §3.1.2.1, RFC 7636): ``response_type=code``, ``state`` and ``nonce`` (random,
  single use: rcp.auth.sso keeps them), PKCE with ``S256``; a fresh authentication before a signature asks
  ``prompt=login`` and ``max_age=0`` (§3.1.2.1), and the ID token must then carry an ``auth_time`` after the request.
- **Token response** (§3.1.3.7): the ID token's JWS signature against the provider's published JWKS (a key id not
  in the cached set refreshes it once: key rotation), with an asymmetric algorithm only (never ``none`` nor HMAC
  with the client secret); ``iss`` equal to the issuer, ``aud`` containing our client id, ``azp`` ours when present
  (or required when there are several audiences), ``exp`` in the future and ``iat`` not in the future, both with
  ``Settings.oidc_clock_skew_s`` of leeway, and ``iat`` not older than :data:`MAX_TOKEN_AGE` (a token kept for
  later is refused); ``nonce`` equal to the one sent; ``at_hash`` when present. authlib's ``CodeIDToken`` checks the
  claims, joserfc (authlib's JOSE library) the signature.
- **Userinfo** (§5.3.2): its ``sub`` must be the ID token's, or the claims are someone else's.
- **Logout token** (OIDC Back-Channel Logout 1.0 §2.4, §2.6): signed like an ID token, ``iss``, ``aud``, ``iat``
  (same skew), ``jti`` (single use: the caller keeps it), ``events`` with the back-channel logout member, ``sid``
  or ``sub``, and no ``nonce``.

Nothing here logs a token, a code or a claim value: logs name the provider and what failed.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from rcp.config import OidcProvider, Settings

__all__ = [
    "BACKCHANNEL_EVENT",
    "MAX_TOKEN_AGE",
    "Authorization",
    "OidcClient",
    "OidcRefused",
    "ProviderMetadata",
    "rpps_of",
]

logger = logging.getLogger(__name__)

#: A discovery document (and its keys) is read again after this long.
METADATA_FOR = 3600.0
#: An ID or logout token issued longer ago than this (plus the clock skew) is refused: it is not a fresh answer.
MAX_TOKEN_AGE = 600
#: Signature algorithms accepted on ID and logout tokens: asymmetric only (OIDC Core §10.1; RFC 8725 §3.1).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: OIDC Back-Channel Logout 1.0 §2.4: the member of ``events`` that makes a JWT a logout token.
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: The least time between two reloads of a provider's keys for an unknown key id (a forged kid cannot make us
#: hammer the provider).
_KEYS_RELOAD_EVERY = 30.0


class OidcRefused(Exception):
    """The provider's answer is not accepted; ``reason`` is for the audit trail (no token, no claim value)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ProviderMetadata:
    """What the service uses of a discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""


@dataclass(frozen=True)
class Authorization:
    """A request about to be sent: the URL for the browser, and the secrets the callback will need."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass
class _Cached:
    metadata: ProviderMetadata
    keys: KeySet
    fetched: float
    keys_fetched: float = field(default=0.0)


def rpps_of(claims: dict[str, Any], names: tuple[str, ...]) -> str:
    """The RPPS number in the first of ``names`` that holds one: 11 digits with their Luhn key
    (rcp.people.check_rpps), or Pro Santé Connect's national identifier of an RPPS-registered professional ("8"
    followed by the 11 digits); "" when none does.

    >>> rpps_of({"SubjectNameID": "810003334827"}, ("SubjectNameID",))
    '10003334827'
    >>> rpps_of({"preferred_username": "10003334827"}, ("SubjectNameID", "preferred_username"))
    '10003334827'
    >>> rpps_of({"SubjectNameID": "012345678"}, ("SubjectNameID",))  # an ADELI number is not an RPPS
    ''
    >>> rpps_of({"SubjectNameID": "810003334828"}, ("SubjectNameID",))  # a wrong key is nobody's
    ''
    """
    from rcp.people import luhn_ok

    for name in names:
        value = claims.get(name)
        if not isinstance(value, str):
            continue
        value = value.strip()
        if len(value) == 12 and value.startswith("8"):
            value = value[1:]
        if len(value) == 11 and value.isascii() and value.isdigit() and luhn_ok(value):
            return value
    return ""


class OidcClient:
    """Discovery, keys and token requests for every configured provider; owns its HTTP client (``close()``)."""

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.providers = {p.name: p for p in settings.oidc_providers}
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._cache: dict[str, _Cached] = {}

    async def close(self) -> None:
        if self._own_http:
            await self.http.aclose()

    def provider(self, name: str) -> OidcProvider | None:
        return self.providers.get(name)

    def redirect_uri(self, provider: OidcProvider) -> str:
        """One callback address per provider (a code cannot be taken to another provider's callback: the mix-up
        defence of RFC 9700 §4.4.2)."""
        return f"{self.settings.public_url}/auth/oidc/{provider.name}/callback"

    # -- discovery and keys -------------------------------------------------------------------------------------

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self.http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcRefused(f"{what} unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise OidcRefused(f"{what} answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise OidcRefused(f"{what} is not JSON") from None
        if not isinstance(data, dict):
            raise OidcRefused(f"{what} is not a JSON object")
        return data

    async def _load(self, provider: OidcProvider) -> _Cached:
        doc = await self._get_json(f"{provider.issuer}/.well-known/openid-configuration", "discovery document")
        if doc.get("issuer") != provider.issuer:
            raise OidcRefused("discovery document names another issuer")
        try:
            metadata = ProviderMetadata(
                issuer=provider.issuer, authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]), jwks_uri=str(doc["jwks_uri"]),
                userinfo_endpoint=str(doc.get("userinfo_endpoint") or ""),
                end_session_endpoint=str(doc.get("end_session_endpoint") or ""))
        except KeyError as exc:
            raise OidcRefused(f"discovery document lacks {exc.args[0]}") from None
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise OidcRefused("provider does not support PKCE S256")
        keys = await self._keys_from(metadata.jwks_uri)
        now = time.monotonic()
        return _Cached(metadata=metadata, keys=keys, fetched=now, keys_fetched=now)

    async def _keys_from(self, jwks_uri: str) -> KeySet:
        data = await self._get_json(jwks_uri, "JWKS")
        try:
            return KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise OidcRefused("JWKS unreadable") from None

    async def _cached(self, provider: OidcProvider) -> _Cached:
        cached = self._cache.get(provider.name)
        if cached is None or time.monotonic() - cached.fetched > METADATA_FOR:
            cached = await self._load(provider)
            self._cache[provider.name] = cached
        return cached

    async def metadata(self, provider: OidcProvider) -> ProviderMetadata:
        return (await self._cached(provider)).metadata

    async def _verified(self, provider: OidcProvider, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JWS ``token``'s header and claims once its signature checks against the provider's keys."""
        cached = await self._cached(provider)
        for attempt in (1, 2):
            try:
                decoded = jwt.decode(token, cached.keys, algorithms=list(ALGORITHMS))
                return dict(decoded.header), dict(decoded.claims)
            except JoseError as exc:
                unknown_key = isinstance(exc, InvalidKeyIdError)
                if attempt == 1 and unknown_key and time.monotonic() - cached.keys_fetched > _KEYS_RELOAD_EVERY:
                    cached.keys = await self._keys_from(cached.metadata.jwks_uri)  # key rotation at the provider
                    cached.keys_fetched = time.monotonic()
                    continue
                raise OidcRefused(f"token signature not verified ({type(exc).__name__})") from None
            except (ValueError, TypeError):
                raise OidcRefused("token unreadable") from None
        raise OidcRefused("token signature not verified")  # pragma: no cover - the loop returns or raises

    # -- the code flow ------------------------------------------------------------------------------------------

    async def authorization(self, provider: OidcProvider, *, fresh: bool = False) -> Authorization:
        """The authorization request (OIDC Core §3.1.2.1) with new ``state``, ``nonce`` and PKCE verifier.

        ``fresh``: the person must authenticate again now (``prompt=login``, ``max_age=0``), before a signature.
        """
        metadata = await self.metadata(provider)
        state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
        extra: dict[str, str] = {"nonce": nonce, "code_challenge": create_s256_code_challenge(verifier),
                                 "code_challenge_method": "S256"}
        if provider.acr_values:
            extra["acr_values"] = provider.acr_values
        if fresh:
            extra.update(prompt="login", max_age="0")
        url = prepare_grant_uri(metadata.authorization_endpoint, provider.client_id, "code",
                                redirect_uri=self.redirect_uri(provider), scope=list(provider.scopes), state=state,
                                **extra)
        return Authorization(url=str(url), state=state, nonce=nonce, code_verifier=verifier)

    async def exchange(self, provider: OidcProvider, *, code: str, code_verifier: str) -> dict[str, Any]:
        """The token request (OIDC Core §3.1.3.1), the client authenticated with ``client_secret_basic`` (RFC 6749
        §2.3.1: id and secret form-encoded, then Basic) when it has a secret, else as a public client."""
        metadata = await self.metadata(provider)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri(provider),
                "code_verifier": code_verifier, "client_id": provider.client_id}
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if provider.client_secret:
            pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = await self.http.post(metadata.token_endpoint, content=urlencode(form), headers=headers)
        except httpx.HTTPError as exc:
            raise OidcRefused(f"token endpoint unreachable ({type(exc).__name__})") from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code != 200 or not isinstance(data, dict):
            error = data.get("error", "") if isinstance(data, dict) else ""
            raise OidcRefused(f"token endpoint answered {response.status_code} {str(error)[:40]}".rstrip())
        if not isinstance(data.get("id_token"), str) or str(data.get("token_type", "")).lower() != "bearer":
            raise OidcRefused("token response without an ID token or a bearer token")
        return data

    async def id_token_claims(self, provider: OidcProvider, token_response: dict[str, Any], *, nonce: str,
                              now: float, fresh_since: float | None = None) -> dict[str, Any]:
        """The ID token's claims, once its signature and claims are verified (see the module docstring).

        ``fresh_since``: the time the request asked ``max_age=0``; ``auth_time`` must not be earlier (give or take
        the clock skew), or the provider let an old sign-in stand for a fresh one (OIDC Core §3.1.2.1).
        """
        header, claims = await self._verified(provider, str(token_response["id_token"]))
        skew = self.settings.oidc_clock_skew_s
        checked = CodeIDToken(
            claims, header,
            options={"iss": {"essential": True, "value": provider.issuer},
                     "aud": {"essential": True, "value": provider.client_id},
                     "sub": {"essential": True}, "nonce": {"essential": True}},
            params={"nonce": nonce, "client_id": provider.client_id, "max_age": fresh_since is not None,
                    "access_token": token_response.get("access_token")},
        )
        try:
            checked.validate(now=int(now), leeway=skew)
        except JoseError as exc:
            raise OidcRefused(f"ID token refused: {type(exc).__name__} {getattr(exc, 'claim', '')}".rstrip()) \
                from None
        if isinstance(claims.get("aud"), list) and len(claims["aud"]) > 1 and claims.get("azp") != provider.client_id:
            raise OidcRefused("ID token refused: several audiences and azp is not this client")
        if float(claims["iat"]) < now - MAX_TOKEN_AGE - skew:
            raise OidcRefused("ID token refused: issued too long ago (iat)")
        if fresh_since is not None:
            auth_time = claims.get("auth_time")
            if not isinstance(auth_time, (int, float)) or auth_time < fresh_since - skew:
                raise OidcRefused("ID token refused: no fresh authentication (auth_time)")
        return claims

    async def userinfo(self, provider: OidcProvider, token_response: dict[str, Any], *, subject: str
                       ) -> dict[str, Any]:
        """The userinfo claims (OIDC Core §5.3), whose ``sub`` must be the ID token's."""
        metadata = await self.metadata(provider)
        if not metadata.userinfo_endpoint:
            return {}
        try:
            response = await self.http.get(metadata.userinfo_endpoint, headers={
                "Authorization": f"Bearer {token_response.get('access_token', '')}", "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcRefused(f"userinfo unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise OidcRefused(f"userinfo answered {response.status_code}")
        if response.headers.get("content-type", "").startswith("application/jwt"):
            _header, data = await self._verified(provider, response.text)
        else:
            try:
                data = response.json()
            except ValueError:
                raise OidcRefused("userinfo is not JSON") from None
        if not isinstance(data, dict) or data.get("sub") != subject:
            raise OidcRefused("userinfo names another subject")
        return data

    # -- sign-out -----------------------------------------------------------------------------------------------

    async def end_session_url(self, provider: OidcProvider, *, id_token: str, post_logout_redirect_uri: str
                              ) -> str:
        """RP-Initiated Logout 1.0 §2: the provider's ``end_session_endpoint`` with ``id_token_hint``,
        ``client_id`` and ``post_logout_redirect_uri``; "" when the provider has none (or is unreachable: the
        local sign-out has happened anyway)."""
        try:
            metadata = await self.metadata(provider)
        except OidcRefused as refused:
            logger.warning("oidc %s: no end-session redirect (%s)", provider.name, refused.reason)
            return ""
        if not metadata.end_session_endpoint:
            return ""
        query = {"client_id": provider.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token:
            query["id_token_hint"] = id_token
        separator = "&" if "?" in metadata.end_session_endpoint else "?"
        return metadata.end_session_endpoint + separator + urlencode(query)

    async def logout_token_claims(self, provider: OidcProvider, token: str, *, now: float) -> dict[str, Any]:
        """A back-channel logout token's claims once verified (Back-Channel Logout 1.0 §2.6, steps 3-7 and 9; the
        caller keeps ``jti`` to refuse a replay, step 10)."""
        _header, claims = await self._verified(provider, token)
        skew = self.settings.oidc_clock_skew_s
        if claims.get("iss") != provider.issuer:
            raise OidcRefused("logout token refused: iss")
        audience = claims.get("aud")
        if not (audience == provider.client_id or (isinstance(audience, list) and provider.client_id in audience)):
            raise OidcRefused("logout token refused: aud")
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or isinstance(iat, bool) or iat > now + skew \
                or iat < now - MAX_TOKEN_AGE - skew:
            raise OidcRefused("logout token refused: iat")
        exp = claims.get("exp")
        if exp is not None and (not isinstance(exp, (int, float)) or exp <= now - skew):
            raise OidcRefused("logout token refused: exp")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise OidcRefused("logout token refused: no jti")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise OidcRefused("logout token refused: events")
        if not isinstance(claims.get("sid"), str) and not isinstance(claims.get("sub"), str):
            raise OidcRefused("logout token refused: neither sid nor sub")
        if "nonce" in claims:
            raise OidcRefused("logout token refused: nonce")
        return claims
