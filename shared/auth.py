"""Supabase access-token verification.

Identity comes only from a token whose signature we verified: the legacy
HS256 project secret, or an asymmetric key (ES256/RS256) from the project's
JWKS, fetched over HTTPS and cached per container. The algorithm is chosen by
the key we hold, never trusted from the token: an HS256 token is only ever
checked against the shared secret, an asymmetric one only against a JWKS key
of the matching type, so `alg: none` and HS/RS confusion cannot pass.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from dataclasses import dataclass
from time import monotonic  # a module global so tests can drive the clock
from typing import Any

import jwt

from shared.errors import ApiError, unauthorized, unavailable

log = logging.getLogger("nexus.auth")

_ASYMMETRIC = {"ES256": "EC", "RS256": "RSA"}
JWKS_TTL_SECONDS = 600
# Unknown kids come from attackers as well as from key rotations: whatever
# callers send, the JWKS endpoint is asked at most this often.
JWKS_REFETCH_MIN_SECONDS = 30
# After a failed fetch, try again sooner than that: without keys nothing passes.
JWKS_RETRY_AFTER_FAILURE_SECONDS = 5
JWKS_MAX_BYTES = 256 * 1024
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Caller:
    user_id: str
    role: str
    claims: dict[str, Any]


class JwksCache:
    """Asymmetric keys by `kid`, refreshed every JWKS_TTL_SECONDS or on an unknown kid.

    Fetches are rate limited (one per JWKS_REFETCH_MIN_SECONDS, however many
    unknown kids arrive) and serialised (concurrent callers wait for one
    fetch). If the endpoint fails, the keys already held keep being served.
    """

    def __init__(self, url: str, timeout: float = 3.0, *, warn_hs256_secret: bool = False):
        self.url = url
        self.timeout = timeout
        # Outside dev with SUPABASE_JWT_SECRET set: say once when the JWKS holds signing keys.
        self._warn_hs256_secret = warn_hs256_secret
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fresh_until = 0.0
        self._next_fetch_at: float | None = None  # None: never tried
        self._have_fetched = False
        self._lock = threading.Lock()

    def get(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is not None:
            if monotonic() < self._fresh_until:
                return key
            # Known but stale: refresh unless another thread already is, and
            # meanwhile keep using the key rather than queueing behind it.
            if self._lock.acquire(blocking=False):
                try:
                    self._maybe_refresh()
                finally:
                    self._lock.release()
            return self._keys.get(kid)
        with self._lock:
            self._maybe_refresh()
            if not self._have_fetched:
                raise unavailable("Token keys could not be fetched; retry shortly.",
                                  retry_after=JWKS_RETRY_AFTER_FAILURE_SECONDS)
            return self._keys.get(kid)

    def _maybe_refresh(self) -> None:
        """Fetch the JWKS if the rate limit allows. Caller holds the lock."""
        now = monotonic()
        if self._next_fetch_at is not None and now < self._next_fetch_at:
            return
        self._next_fetch_at = now + JWKS_REFETCH_MIN_SECONDS
        try:
            keys = _parse_jwks(self._fetch())
        except Exception as e:  # network, HTTP status, JSON: all mean "no new keys"
            log.warning("JWKS fetch failed: %s", type(e).__name__)
            self._next_fetch_at = now + JWKS_RETRY_AFTER_FAILURE_SECONDS
            return
        self._keys = keys
        self._fresh_until = now + JWKS_TTL_SECONDS
        self._have_fetched = True
        if keys and self._warn_hs256_secret:
            self._warn_hs256_secret = False  # once per container
            # A project on asymmetric keys that keeps the legacy secret set still admits
            # HS256 tokens signed with it (docs/configuration.md: when both are needed).
            log.warning("JWKS holds signing keys while SUPABASE_JWT_SECRET is set: HS256 tokens signed with "
                        "the legacy secret are still accepted; unset it once no HS256 token is needed",
                        extra={"reason": "hs256-secret-with-jwks"})

    def _fetch(self) -> Any:
        # Imported here: only JWKS projects pay for urllib's HTTP stack.
        import urllib.request

        req = urllib.request.Request(self.url, headers={"accept": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            body = resp.read(JWKS_MAX_BYTES + 1)
        if len(body) > JWKS_MAX_BYTES:
            raise ValueError("JWKS document too large")
        return json.loads(body)


def _parse_jwks(doc: Any) -> dict[str, jwt.PyJWK]:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, jwt.PyJWK] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or jwk.get("use", "sig") != "sig":
            continue
        try:
            k = jwt.PyJWK(jwk)
        except Exception:
            continue  # a key type or curve we don't use
        if _ASYMMETRIC.get(k.algorithm_name) == jwk.get("kty"):
            keys[jwk["kid"]] = k
    return keys


class TokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        hs256_secret: str | None = None,
        jwks: JwksCache | None = None,
        audience: str = "authenticated",
        leeway: int = 30,
    ):
        self.issuer = issuer
        self.hs256_secret = hs256_secret
        self.jwks = jwks
        self.audience = audience
        self.leeway = leeway

    def verify(self, token: str) -> dict[str, Any]:
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256":
            if not self.hs256_secret:
                raise unauthorized("The access token is signed with an algorithm this project does not use.")
            key: Any = self.hs256_secret
        elif alg in _ASYMMETRIC:
            if self.jwks is None:
                raise unauthorized("The access token is signed with an algorithm this project does not use.")
            kid = header.get("kid")
            jwk = self.jwks.get(kid) if isinstance(kid, str) else None
            if jwk is None or jwk.algorithm_name != alg:
                raise unauthorized("The access token is signed by an unknown key.")
            key = jwk.key
        else:
            raise unauthorized("The access token's algorithm is not accepted.")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub", "aud", "iss"], "verify_nbf": True},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("The access token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("The access token is not valid yet.") from None
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            # The latter: absurd claim values (e.g. an exp beyond any date).
            raise unauthorized("The access token is invalid.") from None


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key; jwt.decode then verifies
    strictly with the algorithm pinned. (jwt.get_unverified_header would parse
    and validate the whole token a second time: a third of verify's cost.)"""
    head, dot, _ = token.partition(".")
    try:
        if not dot:
            raise ValueError("no segments")
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, RecursionError):  # binascii and Unicode errors are ValueErrors
        raise unauthorized("The access token is malformed.") from None
    if not isinstance(header, dict):
        raise unauthorized("The access token is malformed.")
    return header


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("Send `Authorization: Bearer <access token>`.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Send `Authorization: Bearer <access token>`.")
    return token


def authenticate(verifier: TokenVerifier, authorization: str | None) -> Caller:
    """The calling member, from a verified token. Nothing from the body counts."""
    claims = verifier.verify(bearer_token(authorization))
    sub = claims.get("sub")
    # Supabase user ids are canonical UUIDs; anything else is not a member.
    user_id = sub.lower() if isinstance(sub, str) else ""
    if not _UUID.match(user_id):
        raise unauthorized("The access token does not name a user.")
    role = claims.get("role")
    if role != "authenticated":
        raise unauthorized("The access token is not a signed-in member's token.")
    # Supabase's anonymous sign-ins also get role "authenticated"; only this
    # claim tells them apart. Anything but absent or false counts as anonymous.
    if claims.get("is_anonymous", False) is not False:
        raise ApiError("FORBIDDEN", "Guest sessions cannot do this; sign in with your account.")
    return Caller(user_id=user_id, role=role, claims=claims)


_verifier: TokenVerifier | None = None


def get_verifier() -> TokenVerifier:
    """One verifier per container (the JWKS cache lives as long as it)."""
    global _verifier
    if _verifier is None:
        from shared.config import ConfigError, get_settings, trusted_transport

        s = get_settings().require("auth")
        if s.jwks_url and not s.dev_mode and not trusted_transport(s.jwks_url):
            # Whoever can answer a plain-http JWKS fetch can mint any member's token.
            raise ConfigError("Invalid configuration: SUPABASE_JWKS_URL (or SUPABASE_URL) must use https")
        _verifier = TokenVerifier(
            issuer=s.jwt_issuer or "",
            hs256_secret=s.SUPABASE_JWT_SECRET.get_secret_value() if s.SUPABASE_JWT_SECRET else None,
            jwks=JwksCache(s.jwks_url, warn_hs256_secret=bool(s.SUPABASE_JWT_SECRET) and not s.dev_mode)
            if s.jwks_url else None,
            leeway=s.AUTH_CLOCK_SKEW_SECONDS,
        )
    return _verifier


def reset_for_tests() -> None:
    global _verifier
    _verifier = None


def _secrets_rotated(old: Any, new: Any) -> None:
    # A re-read SUPABASE_JWT_SECRET (shared/config.py) needs a verifier built with it.
    if (old.SUPABASE_JWT_SECRET, old.jwks_url, old.jwt_issuer) != (new.SUPABASE_JWT_SECRET, new.jwks_url, new.jwt_issuer):
        reset_for_tests()


def _register() -> None:
    from shared.config import on_rotation

    on_rotation(_secrets_rotated)


_register()
