"""The two database transports give the same answers.

livekit-token runs once with DATABASE_URL (psycopg straight to Postgres) and
once with only SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY (supabase-py's RPC),
the latter through a loopback PostgREST peer over the same test database.
"""

from __future__ import annotations

import socket
import uuid

import jwt as pyjwt
import pytest

from shared import auth, config, db
from shared.db import DatabaseError, PsycopgTransport, SupabaseRpcTransport
from tests import support
from tests.peers.postgrest import PostgrestPeer, api_key
from tests.support import Client, unique_callsign

SERVICE_KEY = api_key(support.JWT_SECRET, "service_role")
ANON_KEY = api_key(support.JWT_SECRET, "anon")


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reconfigure() -> None:
    config.get_settings.cache_clear()
    auth.reset_for_tests()
    db.set_database(None)


@pytest.fixture
def peer(database_url):
    with PostgrestPeer(database_url, support.JWT_SECRET, api_keys=(SERVICE_KEY, ANON_KEY)) as p:
        yield p


@pytest.fixture
def client(env):
    from functions.livekit_token.app import app

    return Client(app)


def use_psycopg(env, url: str) -> None:
    env.setenv("DATABASE_URL", url)
    reconfigure()


def use_rpc(env, supabase_url: str, key: str = SERVICE_KEY) -> None:
    env.delenv("DATABASE_URL", raising=False)
    env.setenv("SUPABASE_URL", supabase_url)
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", key)
    # The issuer would otherwise follow SUPABASE_URL; user tokens name the real project.
    env.setenv("SUPABASE_JWT_ISSUER", support.ISSUER)
    reconfigure()


def comparable(reply) -> tuple:
    """Status, headers that matter and the body, with the minted token reduced to its
    time-independent claims (two calls a moment apart differ only in nbf/exp)."""
    body = reply.json
    if isinstance(body, dict) and "token" in body:
        claims = pyjwt.decode(body["token"], support.LIVEKIT_SECRET, algorithms=["HS256"])
        body = {**body, "token": {k: v for k, v in claims.items() if k not in ("nbf", "exp")}}
        body.pop("expiresAt")
    return reply.status, reply.headers.get("retry-after"), body


def scenarios(sql):
    room = sql.net("voyager", "voyager", "founder")
    return {
        "allowed": (sql.member("founder", callsign=unique_callsign("Ace")).auth(), room),
        "listen-only": (sql.member("voyager").auth(), room),
        "insufficient": (sql.member("scout").auth(), room),
        "unknown room": (sql.member("pioneer").auth(), "no-such-net"),
        "brigged": (sql.member("pioneer", ["Medic", "brigged"]).auth(), room),
        "no profile": ({"authorization": f"Bearer {support.sign_user_token(str(uuid.uuid4()))}",
                        "content-type": "application/json"}, room),
    }


# Given the same members and nets, when each scenario runs through psycopg and through
# supabase-py's RPC, then status and body are identical.
def test_livekit_token_answers_identically_through_both_transports(client, env, sql, database_url, peer):
    cases = scenarios(sql)
    expected = {"allowed": 200, "listen-only": 200, "insufficient": 403, "unknown room": 404, "brigged": 403,
                "no profile": 403}

    use_psycopg(env, database_url)
    direct = {name: comparable(client.post({"roomName": room}, headers)) for name, (headers, room) in cases.items()}
    use_rpc(env, peer.url)
    via_rpc = {name: comparable(client.post({"roomName": room}, headers)) for name, (headers, room) in cases.items()}

    assert {name: r[0] for name, r in direct.items()} == expected
    assert via_rpc == direct
    assert direct["listen-only"][2]["grants"]["canPublish"] is False


# supabase-py's `client.rpc(fn, params)` is what production sends; the peer checks it
# against PostgREST's documented contract and we pin what it sent.
def test_rpc_request_follows_the_postgrest_contract(client, env, sql, peer):
    member, room = sql.member("scout"), sql.net()
    use_rpc(env, peer.url)
    assert client.post({"roomName": room}, member.auth()).status == 200
    [call] = peer.calls
    assert (call.method, call.path, call.status) == ("POST", "/rest/v1/rpc/livekit_token_context", 200)
    assert call.headers["content-profile"] == "public"
    assert call.headers["content-type"] == "application/json"
    assert call.headers["apikey"] == SERVICE_KEY
    assert call.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    import json

    assert json.loads(call.body) == {"p_user_id": member.id, "p_room": room}


def assert_unavailable(reply) -> None:
    assert reply.status == 503, reply
    # The body repeats Retry-After for browser code, as a 429's does.
    assert reply.json == {"error": "UNAVAILABLE", "message": "The database is unavailable; retry shortly.",
                          "details": {"retryAfter": 5}}
    assert reply.headers["retry-after"] == "5"


# Given the database is down, when a member asks for a token, then both transports answer
# the same 503 with Retry-After, however the outage shows itself.
def test_database_down_is_503_through_both_transports(client, env, sql, database_url):
    member, room = sql.member("scout"), sql.net()
    dead_db = f"postgresql://postgres@127.0.0.1:{closed_port()}/nexus_test"

    use_psycopg(env, dead_db)
    assert_unavailable(client.post({"roomName": room}, member.auth()))

    with PostgrestPeer(dead_db, support.JWT_SECRET, api_keys=(SERVICE_KEY,)) as broken:
        use_rpc(env, broken.url)  # PostgREST up, Postgres down: 503 PGRST000
        assert_unavailable(client.post({"roomName": room}, member.auth()))
        assert broken.calls[-1].status == 503

    use_rpc(env, f"http://127.0.0.1:{closed_port()}")  # the API itself refuses connections
    assert_unavailable(client.post({"roomName": room}, member.auth()))


@pytest.mark.parametrize("fault", ["gateway", "schema-cache"])
def test_api_gateway_or_schema_cache_failure_is_503(client, env, sql, peer, fault):
    member, room = sql.member("scout"), sql.net()
    use_rpc(env, peer.url)
    peer.down = fault
    assert_unavailable(client.post({"roomName": room}, member.auth()))
    peer.down = None
    assert client.post({"roomName": room}, member.auth()).status == 200


# Given a deployment configured with the anon key instead of the service role key, when a
# member asks for a token, then the answer is a 500 that leaks nothing (the function is not
# executable by anon), not a misleading 503 or 4xx.
def test_anon_key_instead_of_service_key_is_an_internal_error(client, env, sql, peer):
    member, room = sql.member("scout"), sql.net()
    use_rpc(env, peer.url, ANON_KEY)
    reply = client.post({"roomName": room}, member.auth())
    assert reply.status == 500, reply
    assert reply.json == {"error": "INTERNAL", "message": "Something went wrong on our side."}
    assert peer.calls[-1].status == 401  # PostgREST: 42501 for the anon role


# The database port itself: refusals carry the same SQLSTATE from both transports.
@pytest.mark.parametrize("function,args,state", [
    ("no_such_function", {"p_x": 1}, "42883"),
    ("livekit_token_context", {"p_user_id": "not-a-uuid", "p_room": "x"}, "22P02"),
])
def test_database_errors_carry_the_same_sqlstate(database_url, peer, function, args, state):
    direct, rpc = PsycopgTransport(database_url), SupabaseRpcTransport(peer.url, SERVICE_KEY)
    try:
        errors = []
        for transport in (direct, rpc):
            with pytest.raises(DatabaseError) as caught:
                transport.call(function, **args)
            errors.append(caught.value.sqlstate)
        assert errors == [state, state]
    finally:
        direct.close()
        rpc.close()


def test_both_transports_return_the_same_json(database_url, peer, sql):
    member, room = sql.member("voyager", ["Rescue"], callsign=unique_callsign("Echo")), sql.net("scout", "scout", "founder")
    direct, rpc = PsycopgTransport(database_url), SupabaseRpcTransport(peer.url, SERVICE_KEY)
    try:
        a = direct.call("livekit_token_context", p_user_id=member.id, p_room=room)
        b = rpc.call("livekit_token_context", p_user_id=member.id, p_room=room)
        assert a == b
        assert a["profile"] == {"rank": "voyager", "roles": ["Rescue"], "callsign": member.callsign,
                            "callsign_grandfathered": False}
    finally:
        direct.close()
        rpc.close()


# Given a warm container whose kept connection was closed while it was frozen (the pooler
# or a restart dropped it), when the next request comes, then it reconnects transparently.
def test_psycopg_transport_reconnects_after_its_connection_was_killed(database_url, sql):
    member, room = sql.member("scout"), sql.net()
    transport = PsycopgTransport(database_url)
    try:
        assert transport.call("livekit_token_context", p_user_id=member.id, p_room=room)["net"]["code"] == room
        pid = transport._local.conn.info.backend_pid
        sql.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # returns once it is gone
        assert transport.call("livekit_token_context", p_user_id=member.id, p_room=room)["net"]["code"] == room
        assert transport._local.conn.info.backend_pid != pid
    finally:
        transport.close()
