"""health: founder+ or the service role key; database, contract, LiveKit and config parts.

Runs against the real database with the real migrations; LiveKit is a
loopback peer that answers GET / the way a LiveKit server does ("OK").
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jwt
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import support
from tests.peers.loopback import LoopbackServer, QuietHandler
from tests.support import Client

SERVICE_KEY = "sb_secret_test-service-role-key-0123456789"


class _LiveKitRoot(QuietHandler):
    requests: list[str] = []  # every GET this peer answered, by path

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        _LiveKitRoot.requests.append(self.path)
        self.reply(200, b"OK", "text/plain")


@pytest.fixture(scope="module")
def livekit_server():
    server = LoopbackServer()
    server.handler_class = _LiveKitRoot
    with server:
        yield server


@pytest.fixture
def health(env, livekit_server):
    env.setenv("LIVEKIT_URL", livekit_server.url.replace("http://", "ws://"))
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
    from shared import config

    config.get_settings.cache_clear()
    from functions.health import app as module

    return module


def get(module, token: str | None = None, headers: dict | None = None):
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["authorization"] = f"Bearer {token}"
    return Client(module.app).request("GET", headers=hdrs)


def service_jwt(secret: str = support.JWT_SECRET, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": "supabase", "ref": "test", "role": "service_role", "iat": now, "exp": now + 3600, **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


# Given a founder, when they ask for health, then every part is reported and healthy
# where the test environment is complete, and no configured secret appears anywhere.
def test_founder_gets_every_part(health, sql, base_env):
    reply = get(health, sql.member("founder").token())
    assert reply.status == 200, reply
    body = reply.json
    assert body["database"]["ok"] is True and body["database"]["latencyMs"] >= 0
    assert body["database"]["transport"] == "postgres"
    assert body["contract"]["status"] == "current" and body["contract"]["pending"] == []
    assert body["contract"]["applied"] == body["contract"]["shipped"] > 0
    assert body["livekit"] == {"ok": True, "httpStatus": 200, "latencyMs": body["livekit"]["latencyMs"]}
    # The test environment has no VAPID keys: named, and the report is degraded for it.
    assert "VAPID_PRIVATE_KEY" in body["config"]["missing"] and body["config"]["ok"] is False
    assert body["status"] == "degraded"
    for secret in (support.JWT_SECRET, support.LIVEKIT_SECRET, SERVICE_KEY, base_env["DATABASE_URL"]):
        assert secret not in reply.raw.decode()


def test_complete_configuration_reports_ok(health, sql, env):
    env.setenv("NEXT_PUBLIC_VAPID_PUBLIC_KEY", "BPublicKey")
    env.setenv("VAPID_PRIVATE_KEY", "private-vapid-key-value")
    env.setenv("VAPID_SUBJECT", "mailto:ops@example.test")
    from shared import config

    config.get_settings.cache_clear()
    reply = get(health, sql.member("pioneer").token())
    assert reply.status == 200, reply
    assert reply.json["status"] == "ok" and reply.json["config"] == {"ok": True, "missing": []}
    assert "private-vapid-key-value" not in reply.raw.decode()


@pytest.mark.parametrize("rank", ["vagrant", "scout", "voyager"])
def test_below_founder_is_403(health, sql, rank):
    reply = get(health, sql.member(rank).token())
    assert reply.status == 403, reply
    assert reply.json["error"] == "INSUFFICIENT_CLEARANCE"
    assert "database" not in reply.raw.decode()


def test_member_without_profile_is_403(health):
    import uuid

    reply = get(health, support.sign_user_token(str(uuid.uuid4())))
    assert reply.status == 403 and reply.json["error"] == "INSUFFICIENT_CLEARANCE"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer"}, {"authorization": "Basic abc"},
                                     {"authorization": "Bearer not-a-token"}])
def test_missing_or_malformed_token_is_401(health, headers):
    reply = get(health, headers=headers)
    assert reply.status == 401, reply
    assert reply.json["error"] == "UNAUTHORIZED"


# The service role key, as the plain key or as a JWT signed with the project secret.
def test_service_role_key_gets_the_report(health):
    assert get(health, SERVICE_KEY).status == 200
    reply = get(health, service_jwt())
    assert reply.status == 200, reply
    assert reply.json["contract"]["status"] == "current"


@pytest.mark.parametrize("token", [
    service_jwt(secret="some-other-secret-that-is-long-enough-0123456789"),
    service_jwt(exp=int(time.time()) - 3600),
    service_jwt(exp=None),
    SERVICE_KEY + "x",
], ids=["wrong-secret", "expired", "no-exp", "wrong-key"])
def test_forged_service_tokens_are_401(health, token):
    reply = get(health, token)
    assert reply.status == 401, reply


def livekit_down_at(health, env, url: str):
    """health's reply with LIVEKIT_URL set to `url`, where nothing listens."""
    env.setenv("LIVEKIT_URL", url)
    from shared import config

    config.get_settings.cache_clear()
    return get(health, SERVICE_KEY)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_livekit_down_is_reported_not_fatal(health, env, sql):
    port = closed_port()
    reply = livekit_down_at(health, env, f"ws://127.0.0.1:{port}")
    assert reply.status == 200
    assert reply.json["livekit"] == {"ok": False, "error": "unreachable",
                                     "reason": f"http://127.0.0.1:{port}/: Connection refused"}
    assert reply.json["status"] == "degraded"


# Given a LiveKit URL that carries credentials (userinfo, a token in the query), when LiveKit is
# unreachable, then the reason names the server without them: health's body never shows a secret.
def test_livekit_reason_leaves_credentials_out_of_the_url(health, env, sql):
    port = closed_port()
    reply = livekit_down_at(health, env, f"wss://lk-user:pa55-in-url@127.0.0.1:{port}/rtc?access_token=tok-in-query")
    assert reply.status == 200
    assert reply.json["livekit"]["ok"] is False
    assert reply.json["livekit"]["reason"].startswith(f"https://127.0.0.1:{port}/")
    for secret in ("lk-user", "pa55-in-url", "tok-in-query"):
        assert secret.encode() not in reply.raw


# Given a package that ships a migration the database has not applied, the
# contract part says the database is behind and names the version.
def test_contract_behind_names_pending_versions(health, monkeypatch, tmp_path):
    for path in health.MIGRATIONS_DIR.glob("*.sql"):
        (tmp_path / path.name).write_text("")
    (tmp_path / "20991231000000_future_change.sql").write_text("")
    monkeypatch.setattr(health, "MIGRATIONS_DIR", tmp_path)
    contract = get(health, SERVICE_KEY).json["contract"]
    assert contract["status"] == "behind" and contract["ok"] is False
    assert contract["pending"] == ["20991231000000"]


def test_only_get_and_options(health, sql):
    token = sql.member("founder").token()
    assert Client(health.app).request("OPTIONS").status == 204
    reply = Client(health.app).request("POST", {}, {"authorization": f"Bearer {token}"})
    assert reply.status == 405 and reply.json["error"] == "METHOD_NOT_ALLOWED"


# Given its own database that is then stopped, health answers 503 with the
# parts in the envelope's details for the service role, and 503 for a founder.
def test_database_down_is_503(health, env):
    from nexus.migrate import prepare_local
    from nexus.pg import EmbeddedPostgres
    from shared import config, db

    root = Path(tempfile.mkdtemp(prefix="nexus-health-pg-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "data", fast=True)
    server.start()
    try:
        prepare_local(server.url, log=lambda *_: None)
        own = support.Db(server.url)
        founder = own.member("founder")
        own.close()
        env.setenv("DATABASE_URL", server.url)
        config.get_settings.cache_clear()
        db.set_database(None)
        assert get(health, SERVICE_KEY).status == 200

        server.stop()
        reply = get(health, SERVICE_KEY)
        assert reply.status == 503, reply
        assert reply.headers.get("retry-after")
        assert reply.json["error"] == "UNAVAILABLE"
        details = reply.json["details"]
        assert details["status"] == "down" and details["database"] == {"ok": False, "error": "unreachable"}
        assert details["livekit"]["ok"] is True
        assert server.url not in reply.raw.decode()
        assert get(health, founder.token()).status == 503
    finally:
        db.set_database(None)
        server.destroy()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


_HEADER_TEXT = st.text(st.characters(max_codepoint=255, blacklist_characters="\r\n"), max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(_HEADER_TEXT, _HEADER_TEXT.map(lambda t: "Bearer " + t),
                       st.sampled_from(["eyJhbGciOiJub25lIn0.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.",
                                        "Bearer eyJhbGciOiJub25lIn0.eyJyb2xlIjoic2VydmljZV9yb2xlIn0."])))
def test_hostile_authorization_is_never_5xx(health, value):
    # Given any header value a client can send (latin-1 on the wire), the
    # answer is a 4xx; an unsigned `role: service_role` token included.
    reply = get(health, headers={"authorization": value})
    assert reply.status in (401, 403), reply


# -- issue 25: the caller's rank first, brigged founders out, LIVEKIT_URL never shown --------------

class _Recording:
    """The real transport, recording which SQL functions health calls (nothing is answered for it)."""

    def __init__(self, url: str):
        from shared import db

        class Recording(db.PsycopgTransport):
            calls: list[str] = []

            def call(self, function, **args):
                self.calls.append(function)
                return super().call(function, **args)

        self.transport = Recording(url)
        self.calls = self.transport.calls

    def __enter__(self):
        from shared import db

        db.set_database(self.transport)
        return self

    def __exit__(self, *exc):
        from shared import db

        db.set_database(None)


# Given a member below founder, when they ask for health, then the only database work is the
# rank lookup and LiveKit is not probed: the 403 comes before any check runs.
@pytest.mark.parametrize("rank", ["vagrant", "scout", "voyager"])
def test_below_founder_costs_only_the_rank_lookup(health, sql, base_env, rank):
    member = sql.member(rank)
    _LiveKitRoot.requests.clear()
    with _Recording(base_env["DATABASE_URL"]) as db_calls:
        reply = get(health, member.token())
    assert reply.status == 403 and reply.json["error"] == "INSUFFICIENT_CLEARANCE", reply
    assert len(db_calls.calls) == 1 and "health_snapshot" not in db_calls.calls, db_calls.calls
    assert _LiveKitRoot.requests == []


# A founder's rank is looked up first, then the checks run (and LiveKit is probed).
def test_founder_rank_lookup_comes_before_the_checks(health, sql, base_env):
    founder = sql.member("founder")
    _LiveKitRoot.requests.clear()
    with _Recording(base_env["DATABASE_URL"]) as db_calls:
        reply = get(health, founder.token())
    assert reply.status == 200, reply
    assert db_calls.calls[1:] == ["health_snapshot"] and db_calls.calls[0] != "health_snapshot", db_calls.calls
    assert _LiveKitRoot.requests == ["/"]


# Given a founder or pioneer in the brig (in any spelling, even one written with triggers off),
# when they ask for health, then 403 and no check runs.
@pytest.mark.parametrize("rank,roles", [("founder", ["brigged"]), ("pioneer", ["Medic", "brigged"]),
                                        ("pioneer", [" Brig\t"])])
def test_brigged_founders_get_no_health(health, sql, base_env, rank, roles):
    member = sql.member(rank)
    with psycopg.connect(base_env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE public.profiles SET roles = %s WHERE id = %s", (roles, member.id))
    _LiveKitRoot.requests.clear()
    with _Recording(base_env["DATABASE_URL"]) as db_calls:
        reply = get(health, member.token())
    assert reply.status == 403 and reply.json["error"] == "FORBIDDEN", reply
    assert "brig" in reply.json["message"]
    assert len(db_calls.calls) == 1 and _LiveKitRoot.requests == []


def health_with_livekit_url(health, env, url: str):
    env.setenv("LIVEKIT_URL", url)
    from shared import config

    config.get_settings.cache_clear()
    return get(health, SERVICE_KEY)


# Given a production LIVEKIT_URL that would send room-admin tokens in clear (ws:// or http:// to a
# host that is not loopback) or is no LiveKit URL at all, when health runs, then LiveKit is
# reported as misconfigured by name (never by value), not probed, and the config part names it.
@pytest.mark.parametrize("url", ["ws://livekit.example.invalid", "http://10.0.0.5:7880", "ftp://livekit.example.invalid",
                                 "livekit.example.invalid:7880", "ws://127.0.0.1.example.invalid"])
def test_insecure_livekit_url_is_a_configuration_error_in_health(health, env, sql, url):
    reply = health_with_livekit_url(health, env, url)
    assert reply.status == 200, reply
    assert reply.json["livekit"]["ok"] is False and reply.json["livekit"]["error"] == "invalid configuration"
    assert "LIVEKIT_URL" in reply.json["livekit"]["reason"]
    assert reply.json["config"]["invalid"] == ["LIVEKIT_URL"] and reply.json["config"]["ok"] is False
    assert "example.invalid" not in reply.raw.decode() and "10.0.0.5" not in reply.raw.decode()


# Credentials in LIVEKIT_URL, whatever their shape (no port, spaces, '@' or ':' in the password,
# non-ASCII, percent signs), are never in health's answer or its logs, and it never answers 500.
_CREDENTIAL = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#[]\\"),
                      min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=_CREDENTIAL, password=st.one_of(st.none(), _CREDENTIAL),
       scheme=st.sampled_from(["wss", "https", "ws", "http"]), host=st.sampled_from(["127.0.0.1", "localhost"]),
       port=st.booleans(), tail=st.sampled_from(["", "/", "/rtc", "/rtc?access_token=Tq9tok"]))
def test_livekit_url_credentials_never_shown_or_logged(health, env, sql, capsys, caplog, user, password, scheme, host,
                                                       port, tail):
    import logging

    user, password = f"Uz7{user}", (None if password is None else f"Pw9{password}")
    authority = f"{user}:{password}@" if password is not None else f"{user}@"
    url = f"{scheme}://{authority}{host}{f':{closed_port()}' if port else ''}{tail}"
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        reply = health_with_livekit_url(health, env, url)
    out = capsys.readouterr()
    shown = reply.raw.decode() + out.out + out.err + caplog.text
    assert reply.status == 200, reply
    for secret in (user, password, "Tq9tok"):
        if secret is not None:
            assert secret not in shown, (url, shown)


# Given a database the new migrations have not reached (no health_clearance yet), when members
# ask, then health still judges them by the database's rank and brig: a founder gets the report
# (saying the database is behind), a scout and a brigged founder are refused.
def test_rank_check_on_a_database_behind_the_rank_lookup(health, env, pg):
    from shared import config, db

    with support.migrated_database(pg, "health_behind", before="20251221000000") as url:
        own = support.Db(url)
        founder, scout, brigged = own.member("founder"), own.member("scout"), own.member("pioneer", ["brigged"])
        own.close()
        env.setenv("DATABASE_URL", url)
        config.get_settings.cache_clear()
        db.set_database(None)

        reply = get(health, founder.token())
        assert reply.status == 200, reply
        assert reply.json["contract"]["status"] == "behind"
        assert get(health, scout.token()).json["error"] == "INSUFFICIENT_CLEARANCE"
        assert get(health, brigged.token()).json["error"] == "FORBIDDEN"
        db.set_database(None)  # its connections, before the database is dropped
