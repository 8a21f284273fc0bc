"""Supabase access-token verification.

Identity comes only from a token whose signature we verified: the legacy
HS256 project secret, or an asymmetric key (ES256/RS256) from the project's
JWKS, fetched over HTTPS and cached per container. The algorithm is chosen by
the key we hold, never trusted from the token: an HS256 token is only ever
checked against the shared secret, an asymmetric one only against a JWKS key
of the matching type, so `alg: none` and HS/RS confusion cannot pass.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from shared.errors import ApiError, unauthorized

_ASYMMETRIC = {"ES256": "EC", "RS256": "RSA"}
JWKS_TTL_SECONDS = 600
JWKS_REFETCH_MIN_SECONDS = 30


@dataclass(frozen=True)
class Caller:
    user_id: str
    role: str
    claims: dict[str, Any]


class JwksCache:
    """Keys by `kid`, refreshed every JWKS_TTL_SECONDS or on an unknown kid."""

    def __init__(self, url: str, timeout: float = 3.0):
        self.url = url
        self.timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def get(self, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        key = self._keys.get(kid)
        stale = now - self._fetched_at > JWKS_TTL_SECONDS
        if key is not None and not stale:
            return key
        if key is None and not stale and now - self._fetched_at < JWKS_REFETCH_MIN_SECONDS:
            return None  # unknown kid, fetched recently: don't let callers hammer the JWKS
        self._refresh()
        return self._keys.get(kid)

    def _refresh(self) -> None:
        with self._lock:
            try:
                req = urllib.request.Request(self.url, headers={"accept": "application/json"})
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    doc = json.loads(resp.read())
            except Exception:
                if self._keys:
                    return  # keep serving the keys we have
                raise ApiError("UNAVAILABLE", "Token keys could not be fetched; retry shortly.",
                               headers={"Retry-After": "5"}) from None
            keys: dict[str, jwt.PyJWK] = {}
            for jwk in doc.get("keys", []):
                try:
                    k = jwt.PyJWK(jwk)
                except Exception:
                    continue  # a key type we don't use
                if jwk.get("kid") and k.algorithm_name in _ASYMMETRIC:
                    keys[jwk["kid"]] = k
            self._keys = keys
            self._fetched_at = time.monotonic()


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
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("The access token is malformed.") from None
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
        except jwt.PyJWTError:
            raise unauthorized("The access token is invalid.") from None


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
    try:
        user_id = str(uuid.UUID(str(sub)))
    except ValueError:
        raise unauthorized("The access token does not name a user.") from None
    role = claims.get("role")
    if role != "authenticated":
        raise unauthorized("The access token is not a signed-in member's token.")
    return Caller(user_id=user_id, role=role, claims=claims)


_verifier: TokenVerifier | None = None


def get_verifier() -> TokenVerifier:
    """One verifier per container (the JWKS cache lives as long as it)."""
    global _verifier
    if _verifier is None:
        from shared.config import get_settings

        s = get_settings().require("auth")
        _verifier = TokenVerifier(
            issuer=s.jwt_issuer or "",
            hs256_secret=s.SUPABASE_JWT_SECRET.get_secret_value() if s.SUPABASE_JWT_SECRET else None,
            jwks=JwksCache(s.jwks_url) if s.jwks_url else None,
            leeway=s.AUTH_CLOCK_SKEW_SECONDS,
        )
    return _verifier


def reset_for_tests() -> None:
    global _verifier
    _verifier = None
