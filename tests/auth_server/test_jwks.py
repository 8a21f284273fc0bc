"""Verification of the auth server's ES256 tokens through its JWKS, as deployed functions do:
one fetch then the cache, a rotated key accepted without a restart once the refetch limit
allows, and unknown key ids refused without a fetch each. Time is the verifier's injectable
clock (shared.auth.monotonic), never the wall clock."""

from __future__ import annotations

import uuid

import pytest

from nexus import auth_server
from shared import auth as shared_auth
from tests import support
from tests.auth_server.conftest import Auth, call_function, use_jwks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(shared_auth, "monotonic", c)
    return c


@pytest.fixture
def fetches(monkeypatch) -> list[str]:
    """Every JWKS fetch the functions make (the real fetch still runs)."""
    seen: list[str] = []
    real = shared_auth.JwksCache._fetch

    def counted(self):
        seen.append(self.url)
        return real(self)

    monkeypatch.setattr(shared_auth.JwksCache, "_fetch", counted)
    return seen


@pytest.fixture
def rotating(auth_binary, database_url):
    """An auth server of its own (same database), whose keys this test rotates."""
    server = auth_server.AuthServer(database_url, support.JWT_SECRET, auth_server.new_signing_jwk(),
                                    external_url=support.ISSUER, binary=auth_binary)
    server.start()
    try:
        yield Auth(server)
    finally:
        server.stop()


def token_call(session_or_token, net: str) -> int:
    token = getattr(session_or_token, "access_token", session_or_token)
    return call_function("livekit-token", {"roomName": net, "participantName": "Ace"},
                         {"authorization": f"Bearer {token}", "content-type": "application/json"}).status


def test_one_fetch_then_the_cache(auth, env, sql, clock, fetches):
    use_jwks(env, auth.jwks_url)
    net = sql.net()
    sessions = [auth.sign_up() for _ in range(3)]
    for _ in range(3):
        for session in sessions:
            assert token_call(session, net) == 200
        clock.now += shared_auth.JWKS_REFETCH_MIN_SECONDS  # well within the cache's life
    assert fetches == [auth.jwks_url]


def test_a_rotated_key_is_accepted_without_restart_within_the_refetch_limit(rotating, env, sql, clock, fetches):
    use_jwks(env, rotating.jwks_url)
    net = sql.net()
    email = f"{uuid.uuid4().hex[:12]}@example.test"
    before = rotating.sign_up(email)
    assert token_call(before, net) == 200
    assert len(fetches) == 1

    rotating.server.rotate()
    after = rotating.sign_in(email)
    assert after.access_token.split(".")[0] != before.access_token.split(".")[0]  # another kid
    clock.now += shared_auth.JWKS_REFETCH_MIN_SECONDS
    assert token_call(after, net) == 200
    assert len(fetches) == 2
    # Tokens signed before the rotation stay valid: the old key is still published.
    assert token_call(before, net) == 200
    assert len(fetches) == 2


def test_unknown_key_ids_are_refused_without_a_fetch_each(auth, env, sql, clock, fetches):
    use_jwks(env, auth.jwks_url)
    net = sql.net()
    session = auth.sign_up()
    assert token_call(session, net) == 200
    assert len(fetches) == 1
    claims = shared_auth.jwt.decode(session.access_token, options={"verify_signature": False})
    for _ in range(20):
        forged = auth_server.sign_with(auth_server.new_signing_jwk(), claims)
        assert token_call(forged, net) == 401
    assert len(fetches) == 1
    # Once the limit allows, one more fetch for the lot of them, and still refused.
    clock.now += shared_auth.JWKS_REFETCH_MIN_SECONDS
    for _ in range(5):
        assert token_call(auth_server.sign_with(auth_server.new_signing_jwk(), claims), net) == 401
    assert len(fetches) == 2
