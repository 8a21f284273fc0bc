"""A loopback Supabase Auth JWKS endpoint with keys generated per test run.

Serves `GET /auth/v1/.well-known/jwks.json` like Supabase does for projects
with asymmetric signing keys: public ES256 (P-256) and RS256 keys, each with
`kid`, `alg` and `use: sig`. Tests sign tokens with the matching private keys
(`SigningKey.sign`) and count how often the verifier fetched the document.

    with JwksPeer([es, rs]) as peer:
        env.setenv("SUPABASE_JWKS_URL", peer.jwks_url)
        ...
        assert peer.fetches == 1
        peer.keys = [es, rs, rotated]    # a key rotation
        peer.failing = True              # answer 500 until reset
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.peers.loopback import LoopbackServer, QuietHandler

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


class SigningKey:
    def __init__(self, alg: str, kid: str | None = None):
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        if alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        elif alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            raise ValueError(alg)
        self.jwk: dict[str, Any] = {**jwk, "kid": self.kid, "alg": alg, "use": "sig", "key_ops": ["verify"]}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, alg: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=alg or self.alg,
                          headers={"kid": kid if kid is not None else self.kid})


class _JwksHandler(QuietHandler):
    peer: "JwksPeer"

    def do_GET(self) -> None:
        peer = self.peer
        if self.path.split("?")[0] != JWKS_PATH:
            self.reply(404, b'{"message":"not found"}')
            return
        peer.fetches += 1
        if peer.delay:
            time.sleep(peer.delay)
        if peer.failing:
            self.reply(500, b'{"message":"internal error"}')
            return
        self.reply(200, json.dumps({"keys": [k.jwk for k in peer.keys]}).encode(),
                   headers={"cache-control": "public, max-age=600"})


class JwksPeer(LoopbackServer):
    handler_class = _JwksHandler

    def __init__(self, keys: list[SigningKey], *, lifetime: float = 120.0):
        super().__init__(lifetime=lifetime)
        self.keys = list(keys)
        self.fetches = 0
        self.failing = False
        self.delay = 0.0

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH
