"""Supabase access tokens at the livekit-token edge: hostile tokens get 401, good ones pass.

Every token here is really signed (HS256 with the project secret, ES256/RS256
with keys served by a loopback JWKS endpoint) and verified by the real
verifier inside the real function; only the clock of the JWKS cache is driven
by the test so that TTLs and rate limits need no sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest

from shared import auth, config
from tests import support
from tests.peers.jwks import JwksPeer, SigningKey
from tests.support import Client


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(user_id: str, **overrides) -> dict:
    now = int(time.time())
    out = {"sub": user_id, "aud": "authenticated", "role": "authenticated", "iss": support.ISSUER,
           "iat": now, "exp": now + 3600, "session_id": str(uuid.uuid4())}
    for k, v in overrides.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def hand_signed(header: dict, payload: dict, key: bytes | None) -> str:
    """A token built by hand, as an attacker would: any header, HMAC with any key."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


class Clock:
    def __init__(self):
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def es_key():
    return SigningKey("ES256")


@pytest.fixture(scope="module")
def rs_key():
    return SigningKey("RS256")


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(auth, "monotonic", c)
    return c


def reconfigure() -> None:
    config.get_settings.cache_clear()
    auth.reset_for_tests()


@pytest.fixture
def jwks(env, clock, es_key, rs_key):
    """The project publishes ES256 and RS256 keys and still accepts the legacy HS256 secret."""
    with JwksPeer([es_key, rs_key]) as peer:
        env.setenv("SUPABASE_JWKS_URL", peer.jwks_url)
        reconfigure()
        yield peer


@pytest.fixture
def client(env):
    from functions.livekit_token.app import app

    return Client(app)


@pytest.fixture(scope="module")
def target(sql):
    """A real member and an open net: any rejection below is the token's fault."""
    return sql.member("voyager"), sql.net("vagrant", "vagrant", "scout")


def ask(client: Client, target, authorization: str | None):
    _, room = target
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return client.post({"roomName": room}, headers)


def assert_401(reply) -> None:
    assert reply.status == 401, reply
    assert reply.json["error"] == "UNAUTHORIZED"
    assert set(reply.json) <= {"error", "message", "details"}
    assert reply.headers.get("www-authenticate") == "Bearer"


# Given a member with a valid HS256 token, when they ask for a token, then it works:
# the control case for every rejection that follows.
def test_valid_hs256_token_is_accepted(client, target):
    member, _ = target
    reply = ask(client, target, f"Bearer {member.token()}")
    assert reply.status == 200, reply
    assert reply.json["identity"] == member.id
    # The scheme is case-insensitive (RFC 9110) and stray spaces are tolerated.
    assert ask(client, target, f"bearer   {member.token()} ").status == 200


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer", "Bearer not.a.jwt",
    "Bearer a.b", "Bearer ....", "Bearer eyJhbGciOiJIUzI1NiJ9", "Bearer \u00e9\u00e9.\u00e9.\u00e9",
])
def test_missing_or_malformed_authorization_is_401(client, target, authorization):
    assert_401(ask(client, target, authorization))


@pytest.mark.parametrize("overrides", [
    pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
    pytest.param({"exp": None}, id="no-exp"),
    pytest.param({"nbf": int(time.time()) + 3600}, id="not-yet-valid"),
    pytest.param({"iat": int(time.time()) + 3600}, id="issued-in-the-future"),
    pytest.param({"aud": "anon"}, id="wrong-audience"),
    pytest.param({"aud": None}, id="no-audience"),
    pytest.param({"iss": "https://evil.example/auth/v1"}, id="wrong-issuer"),
    pytest.param({"iss": None}, id="no-issuer"),
    pytest.param({"sub": "not-a-uuid"}, id="non-uuid-sub"),
    pytest.param({"sub": "{0c8f0b8e-5f2a-4c3e-9d7a-1b2c3d4e5f60}"}, id="braced-uuid-sub"),
    pytest.param({"sub": None}, id="no-sub"),
    pytest.param({"sub": 12345}, id="numeric-sub"),
    pytest.param({"role": "anon"}, id="anon-role"),
    pytest.param({"role": "service_role"}, id="service-role"),
    pytest.param({"role": None}, id="no-role"),
])
def test_hs256_token_with_bad_claims_is_401(client, target, overrides):
    member, _ = target
    assert_401(ask(client, target, f"Bearer {member.token(**overrides)}"))


def test_expired_and_immature_tokens_say_why(client, target):
    member, _ = target
    expired = ask(client, target, f"Bearer {member.token(exp=int(time.time()) - 3600)}")
    immature = ask(client, target, f"Bearer {member.token(nbf=int(time.time()) + 3600)}")
    assert "expired" in expired.json["message"]
    assert "not valid yet" in immature.json["message"]


def test_token_signed_with_another_secret_is_401(client, target):
    member, _ = target
    assert_401(ask(client, target, f"Bearer {member.token(secret='another-secret-of-sufficient-length-0123456789')}"))


# Given Supabase's own API keys (JWTs for the anon and service_role roles), when one is
# presented as a member's access token, then it is refused: neither names a member.
@pytest.mark.parametrize("role", ["anon", "service_role"])
def test_supabase_api_keys_are_not_user_tokens(client, target, role):
    now = int(time.time())
    api_key = support.sign_user_token("x", sub=None, aud=None, email=None, iss="supabase", role=role,
                                      ref="abcdefghijklmnop", iat=now, exp=now + 10 * 365 * 86400)
    assert_401(ask(client, target, f"Bearer {api_key}"))
    # ... and not even with a member's sub and the right audience grafted on.
    assert_401(ask(client, target, f"Bearer {target[0].token(role=role)}"))


# Given a Supabase anonymous sign-in (a real, validly signed session with role
# "authenticated" and is_anonymous true), when it asks for a token, then it is 403
# FORBIDDEN, not treated as a member: the token is genuine, the guest is not allowed.
# Any value but an absent or false claim counts as anonymous.
@pytest.mark.parametrize("value", [True, "true", 1, None], ids=["true", "string", "one", "null"])
def test_anonymous_sign_in_is_403(client, target, jwks, es_key, value):
    member, _ = target
    anonymous = claims(member.id) | {"is_anonymous": value}
    for token in (jwt.encode(anonymous, support.JWT_SECRET, algorithm="HS256"), es_key.sign(anonymous)):
        reply = ask(client, target, f"Bearer {token}")
        assert reply.status == 403, reply
        assert reply.json == {"error": "FORBIDDEN",
                              "message": "Guest sessions cannot do this; sign in with your account."}


def test_permanent_user_with_is_anonymous_false_is_accepted(client, target):
    member, _ = target
    assert ask(client, target, f"Bearer {member.token(is_anonymous=False)}").status == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_401(client, target, alg):
    member, _ = target
    token = hand_signed({"alg": alg, "typ": "JWT"}, claims(member.id), None)
    assert_401(ask(client, target, f"Bearer {token}"))
    # Also with a trailing signature an unwary verifier might ignore.
    assert_401(ask(client, target, f"Bearer {token}AAAA"))


@pytest.mark.parametrize("alg", ["HS384", "HS512", "PS256", "ES384", "EdDSA", "RS512", ""])
def test_algorithms_the_project_does_not_use_are_401(client, target, alg):
    member, _ = target
    token = hand_signed({"alg": alg, "typ": "JWT"}, claims(member.id), support.JWT_SECRET.encode())
    assert_401(ask(client, target, f"Bearer {token}"))


# Given a project with published asymmetric keys, when an attacker HMACs a token with a
# public key (PEM or JWK text) as the secret (HS/RS confusion), then it is refused,
# whether or not the legacy HS256 secret is configured.
@pytest.mark.parametrize("legacy_secret", [True, False], ids=["with-hs256-secret", "jwks-only"])
def test_hs256_signed_with_a_public_key_is_401(client, target, jwks, env, es_key, rs_key, legacy_secret):
    if not legacy_secret:
        env.delenv("SUPABASE_JWT_SECRET")
        reconfigure()
    member, _ = target
    for key in (rs_key, es_key):
        for secret in (key.public_pem, json.dumps(key.jwk).encode()):
            token = hand_signed({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims(member.id), secret)
            assert_401(ask(client, target, f"Bearer {token}"))


def test_jwks_only_project_refuses_hs256(client, target, jwks, env):
    env.delenv("SUPABASE_JWT_SECRET")
    reconfigure()
    member, _ = target
    assert_401(ask(client, target, f"Bearer {member.token()}"))


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_valid_asymmetric_token_from_jwks_is_accepted(client, target, jwks, es_key, rs_key, alg):
    member, _ = target
    key = es_key if alg == "ES256" else rs_key
    reply = ask(client, target, f"Bearer {key.sign(claims(member.id))}")
    assert reply.status == 200, reply
    assert reply.json["identity"] == member.id


def test_asymmetric_token_with_bad_claims_is_401(client, target, jwks, es_key):
    member, _ = target
    for bad in ({"exp": int(time.time()) - 3600}, {"nbf": int(time.time()) + 3600}, {"aud": "anon"},
                {"iss": "https://evil.example/auth/v1"}, {"role": "service_role"}, {"sub": "nope"}):
        assert_401(ask(client, target, f"Bearer {es_key.sign(claims(member.id, **bad))}"))


def test_wrong_key_unknown_kid_and_mismatched_alg_are_401(client, target, jwks, es_key, rs_key):
    member, _ = target
    impostor_es, impostor_rs = SigningKey("ES256"), SigningKey("RS256")
    c = claims(member.id)
    assert_401(ask(client, target, f"Bearer {impostor_es.sign(c, kid=es_key.kid)}"))  # wrong key, real kid
    assert_401(ask(client, target, f"Bearer {impostor_rs.sign(c, kid=rs_key.kid)}"))
    assert_401(ask(client, target, f"Bearer {impostor_es.sign(c)}"))  # unknown kid
    assert_401(ask(client, target, f"Bearer {es_key.sign(c, kid='')}"))
    # An RS256 token naming the EC key's kid (and vice versa) never reaches verification.
    assert_401(ask(client, target, f"Bearer {rs_key.sign(c, kid=es_key.kid)}"))
    assert_401(ask(client, target, f"Bearer {es_key.sign(c, kid=rs_key.kid)}"))
    # No kid at all.
    no_kid = support.sign_user_token(member.id, secret=es_key.private, algorithm="ES256")
    assert_401(ask(client, target, f"Bearer {no_kid}"))


def test_valid_asymmetric_token_without_profile_is_403(client, target, jwks, es_key):
    reply = ask(client, target, f"Bearer {es_key.sign(claims(str(uuid.uuid4())))}")
    assert reply.status == 403, reply
    assert reply.json["error"] == "FORBIDDEN"


# Given a warm container, when many requests arrive, then the JWKS is fetched once.
def test_jwks_is_fetched_once_and_cached(client, target, jwks, es_key, rs_key, clock):
    member, _ = target
    for key in (es_key, rs_key, es_key, rs_key):
        assert ask(client, target, f"Bearer {key.sign(claims(member.id))}").status == 200
        clock.now += 60
    assert jwks.fetches == 1


# Given cached keys, when tokens with unknown kids flood in, then the JWKS is asked at most
# once per rate-limit window; a genuinely rotated-in key is picked up once the window passes.
def test_unknown_kid_refreshes_with_rate_limit(client, target, jwks, es_key, clock):
    member, _ = target
    assert ask(client, target, f"Bearer {es_key.sign(claims(member.id))}").status == 200
    assert jwks.fetches == 1

    rotated = SigningKey("ES256")
    jwks.keys.append(rotated)
    clock.now += auth.JWKS_REFETCH_MIN_SECONDS + 1
    assert ask(client, target, f"Bearer {rotated.sign(claims(member.id))}").status == 200
    assert jwks.fetches == 2

    for _ in range(20):  # forged kids, all inside one window
        assert_401(ask(client, target, f"Bearer {rotated.sign(claims(member.id), kid=uuid.uuid4().hex)}"))
    assert jwks.fetches == 2
    clock.now += auth.JWKS_REFETCH_MIN_SECONDS + 1
    assert_401(ask(client, target, f"Bearer {rotated.sign(claims(member.id), kid='still-unknown')}"))
    assert jwks.fetches == 3


# Given cached keys past their TTL, when the JWKS endpoint is down, then the keys held keep
# working; once it is back, a key the project revoked stops working.
def test_stale_keys_survive_an_outage_and_revocation_takes_effect(client, target, jwks, es_key, rs_key, clock):
    member, _ = target
    assert ask(client, target, f"Bearer {es_key.sign(claims(member.id))}").status == 200
    jwks.failing = True
    clock.now += auth.JWKS_TTL_SECONDS + 1
    assert ask(client, target, f"Bearer {es_key.sign(claims(member.id))}").status == 200
    assert jwks.fetches == 2

    jwks.failing = False
    jwks.keys = [rs_key]  # es_key revoked
    clock.now += auth.JWKS_REFETCH_MIN_SECONDS + 1
    assert_401(ask(client, target, f"Bearer {es_key.sign(claims(member.id))}"))
    assert ask(client, target, f"Bearer {rs_key.sign(claims(member.id))}").status == 200
    assert jwks.fetches == 3


# Given a cold container whose JWKS endpoint is down, when an ES256 token arrives, then the
# answer is 503 with Retry-After (not 401, not 500), the endpoint is not hammered, HS256
# tokens still work, and the container recovers once the endpoint does.
def test_jwks_outage_at_cold_start_is_503_and_recovers(client, target, jwks, es_key, clock):
    member, _ = target
    jwks.failing = True
    for _ in range(5):
        reply = ask(client, target, f"Bearer {es_key.sign(claims(member.id))}")
        assert reply.status == 503, reply
        assert reply.json["error"] == "UNAVAILABLE"
        assert reply.headers["retry-after"] == str(auth.JWKS_RETRY_AFTER_FAILURE_SECONDS)
    assert jwks.fetches == 1
    assert ask(client, target, f"Bearer {member.token()}").status == 200

    jwks.failing = False
    clock.now += auth.JWKS_RETRY_AFTER_FAILURE_SECONDS + 0.1
    assert ask(client, target, f"Bearer {es_key.sign(claims(member.id))}").status == 200
    assert jwks.fetches == 2


@pytest.mark.parametrize("document", [b"not json", b"[]", b'{"keys": "nope"}', b'{"keys": [1, "x", {"kty": "oct"}]}'])
def test_garbage_jwks_document_never_breaks_the_function(client, target, env, clock, es_key, document):
    from tests.peers.loopback import LoopbackServer, QuietHandler

    class Garbage(QuietHandler):
        def do_GET(self):
            self.reply(200, document)

    class GarbagePeer(LoopbackServer):
        handler_class = Garbage

    with GarbagePeer() as peer:
        env.setenv("SUPABASE_JWKS_URL", peer.url + "/jwks.json")
        reconfigure()
        member, _ = target
        reply = ask(client, target, f"Bearer {es_key.sign(claims(member.id))}")
        assert reply.status in (401, 503), reply
        assert ask(client, target, f"Bearer {member.token()}").status == 200


# Given a production deployment whose JWKS would be fetched over plain http from a remote
# host, when any request arrives, then it is refused as misconfigured (500, nothing leaked):
# whoever answers that fetch could mint any member's token.
@pytest.mark.parametrize("setting", [("SUPABASE_JWKS_URL", "http://auth.example.invalid/jwks.json"),
                                     ("SUPABASE_URL", "http://project.example.invalid")])
def test_plain_http_jwks_is_refused_in_production(client, target, env, setting):
    name, value = setting
    env.delenv("SUPABASE_JWKS_URL")
    env.setenv(name, value)
    env.setenv("SUPABASE_JWT_ISSUER", support.ISSUER)
    reconfigure()
    reply = ask(client, target, f"Bearer {target[0].token()}")
    assert reply.status == 500, reply
    assert reply.json == {"error": "INTERNAL", "message": "The service is not configured correctly."}


# Given a production project whose JWKS holds signing keys while SUPABASE_JWT_SECRET is still set
# (HS256 tokens keep passing), when the keys are fetched, then one structured warning says so,
# naming the setting and never its value; dev, or a JWKS-only project, hears nothing.
def _jwks_warnings(caplog) -> list:
    return [r for r in caplog.records if r.name == "nexus.auth" and r.levelname == "WARNING"
            and "SUPABASE_JWT_SECRET" in r.getMessage()]


def test_signing_keys_and_a_legacy_secret_warn_outside_dev(client, target, jwks, es_key, clock, caplog):
    member, _ = target
    with caplog.at_level("WARNING", logger="nexus.auth"):
        assert ask(client, target, f"Bearer {es_key.sign(claims(member.id))}").status == 200
        clock.now += auth.JWKS_TTL_SECONDS + 1
        assert ask(client, target, f"Bearer {es_key.sign(claims(member.id))}").status == 200
    warned = _jwks_warnings(caplog)
    assert len(warned) == 1, caplog.text
    assert getattr(warned[0], "reason", None) == "hs256-secret-with-jwks"
    assert support.JWT_SECRET not in caplog.text


def test_no_warning_in_dev_or_without_the_secret(client, target, jwks, es_key, env, clock, caplog):
    member, _ = target
    for change in (lambda: env.setenv("NEXUS_ENV", "dev"),
                   lambda: (env.setenv("NEXUS_ENV", "production"), env.delenv("SUPABASE_JWT_SECRET"))):
        change()
        reconfigure()
        clock.now += auth.JWKS_REFETCH_MIN_SECONDS + 1
        with caplog.at_level("WARNING", logger="nexus.auth"):
            assert ask(client, target, f"Bearer {es_key.sign(claims(member.id))}").status == 200
    assert _jwks_warnings(caplog) == []
