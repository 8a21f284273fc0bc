"""`make dev` with Supabase's auth server behind `$SUPABASE_URL/auth/v1`, as a frontend
developer uses it with supabase-js (the anon key from dev.env), and without the server."""

from __future__ import annotations

import os
import subprocess
import uuid

import jwt
import pytest

from nexus import auth_server
from tests.e2e.devstack import NEXUS, ROOT, demo_token, running_dev_stack


def _request(url: str, method: str = "GET", body=None, headers: dict | None = None) -> tuple[int, object]:
    return auth_server.call(url, method, "", body, headers=headers)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if auth_server.find_binary() is None:
        message = auth_server.how_to_get()
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and the auth server is missing: {message}", pytrace=False)
        pytest.skip(message)
    with running_dev_stack(tmp_path_factory.mktemp("devauth")) as s:
        yield s


def _livekit_token(stack, token: str) -> tuple[int, object]:
    return _request(f"{stack['base']}/livekit-token", "POST", {"roomName": "test-room", "participantName": "Ace"},
                    {"authorization": f"Bearer {token}"})


# Given `make dev`, when a frontend signs up and in with the URL and anon key from dev.env
# (what supabase-js sends), then the session's token works with the functions.
def test_a_frontend_signs_up_signs_in_and_calls_a_function(stack):
    url, anon = stack["dev"]["SUPABASE_URL"], stack["dev"]["SUPABASE_ANON_KEY"]
    keyed = {"apikey": anon, "authorization": f"Bearer {anon}"}
    email = f"{uuid.uuid4().hex[:10]}@example.test"
    status, body = _request(f"{url}/auth/v1/signup", "POST",
                            {"email": email, "password": "frontend-pass-1", "data": {"callsign": "Frontend"}}, keyed)
    assert status == 200, body
    status, session = _request(f"{url}/auth/v1/token?grant_type=password", "POST",
                               {"email": email, "password": "frontend-pass-1"}, keyed)
    assert status == 200, session
    assert jwt.get_unverified_header(session["access_token"])["alg"] == "ES256"
    assert _livekit_token(stack, session["access_token"])[0] == 200
    status, jwks = _request(f"{url}/auth/v1/.well-known/jwks.json")
    assert status == 200 and [k["alg"] for k in jwks["keys"]] == ["ES256"]
    # make dev serves no PostgREST.
    assert _request(f"{url}/rest/v1/profiles", headers=keyed)[0] == 404


# Given a browser app on another origin, its CORS preflight for supabase-js's headers passes.
def test_a_browser_preflight_for_supabase_js_passes(stack):
    import urllib.request

    req = urllib.request.Request(f"{stack['dev']['SUPABASE_URL']}/auth/v1/token?grant_type=password", method="OPTIONS",
                                 headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "apikey,authorization,content-type,"
                                                                            "x-client-info,x-supabase-api-version"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        assert resp.status in (200, 204)
        assert resp.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
        allowed = resp.headers["access-control-allow-headers"].lower()
    for header in ("apikey", "authorization", "content-type", "x-client-info", "x-supabase-api-version"):
        assert header in allowed, allowed


# Given the demo members, they were made through the auth server: its admin API lists them,
# they sign in with the dev password (`nexus token`), and a custom --ttl is signed with the
# server's own ES256 key.
def test_demo_members_are_the_auth_servers_and_nexus_token_works(stack):
    from nexus.devenv import demo_email, demo_user_id

    service = stack["dev"]["SUPABASE_SERVICE_ROLE_KEY"]
    status, body = _request(f"{stack['dev']['SUPABASE_URL']}/auth/v1/admin/users/{demo_user_id('scout')}",
                            headers={"apikey": service, "authorization": f"Bearer {service}"})
    assert status == 200 and body["email"] == demo_email("scout"), body
    session_token = demo_token(stack, "--rank", "scout")
    claims = jwt.decode(session_token, options={"verify_signature": False})
    assert claims["sub"] == demo_user_id("scout") and "session_id" in claims
    assert _livekit_token(stack, session_token)[0] == 200

    long_lived = demo_token(stack, "--rank", "scout", "--ttl", "120")
    header = jwt.get_unverified_header(long_lived)
    claims = jwt.decode(long_lived, options={"verify_signature": False})
    assert header["alg"] == "ES256" and header["kid"] == jwt.get_unverified_header(session_token)["kid"]
    assert claims["exp"] - claims["iat"] == 120
    assert _livekit_token(stack, long_lived)[0] == 200


# Given no auth server binary, `make dev` runs on the shim, says so in one line with where
# Supabase publishes the binaries, `nexus token` still works, and auth settings given to
# `nexus dev` are honoured.
def test_without_the_auth_server_dev_runs_on_the_shim(tmp_path):
    missing = tmp_path / "no-auth-binary"
    jwks = "https://project.example.test/auth/v1/.well-known/jwks.json"
    with running_dev_stack(tmp_path, extra_env={"NEXUS_AUTH_BIN": str(missing), "SUPABASE_JWKS_URL": jwks,
                                                "AUTH_CLOCK_SKEW_SECONDS": "45"}) as stack:
        lines = [line for line in stack["log"].read_text().splitlines() if line.startswith("Auth:")]
        env = {**os.environ, "NEXUS_AUTH_BIN": str(missing)}
        expected = subprocess.run([*NEXUS[:1], "-c", "from nexus.auth_server import how_to_get; print(how_to_get())"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert lines == [f"Auth: not started, running on the shim (tokens from `nexus token` only): {expected}"]
        assert "https://github.com/supabase/auth/releases" in expected
        assert stack["dev"]["SUPABASE_JWKS_URL"] == jwks
        assert stack["dev"]["AUTH_CLOCK_SKEW_SECONDS"] == "45"
        token = demo_token(stack, "--rank", "scout")
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
        assert _livekit_token(stack, token)[0] == 200
        assert _request(f"{stack['dev']['SUPABASE_URL']}/auth/v1/health")[0] == 404
