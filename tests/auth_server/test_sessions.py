"""Sessions the real auth server issues, used against our functions and our database."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from nexus import auth_server
from tests import support
from tests.auth_server.conftest import PASSWORD, call_function


def profiles(sql, user_id: str) -> list[tuple]:
    return sql.execute("SELECT callsign, rank FROM public.profiles WHERE id = %s", (user_id,))


# Given a sign-up with email, password and a callsign, then the account has exactly one
# profile: a vagrant, its callsign cleaned by our rules (surrounding blanks trimmed).
def test_sign_up_with_a_callsign_makes_one_vagrant_profile(auth, sql):
    callsign = f"Ace {uuid.uuid4().hex[:8]}"
    session = auth.sign_up(callsign=f"  {callsign}  ")
    assert profiles(sql, session.user_id) == [(callsign, "vagrant")]
    assert sql.one("SELECT email FROM auth.users WHERE id = %s", (session.user_id,)) == session.body["user"]["email"]


# Given metadata that breaks the callsign rules, the sign-up still succeeds and the account
# still gets its profile; what the rules refuse is left out.
@pytest.mark.parametrize("case", ["bidi", "200 characters", "taken", "not text", "no metadata"])
def test_metadata_breaking_the_rules_still_makes_account_and_profile(auth, sql, case):
    expected = None
    if case == "bidi":
        data = {"callsign": "Ace\u202eXoN"}
    elif case == "200 characters":
        data = {"callsign": "A" + "b" * 199}
        expected = data["callsign"][:64]  # the trigger keeps the first 64 (profiles allow no more)
    elif case == "taken":
        held = f"Taken {uuid.uuid4().hex[:8]}"
        sql.member("scout", callsign=held)
        data = {"callsign": held.upper()}
    elif case == "not text":
        data = {"callsign": {"nested": ["x"]}}
    else:
        data = {}
    session = auth.sign_up(**data)
    rows = profiles(sql, session.user_id)
    assert len(rows) == 1 and rows[0][1] == "vagrant"
    if case == "not text":
        assert rows[0][0] is None or sql.one("SELECT public.text_is_shown_plainly(%s)", (rows[0][0],))
    else:
        assert rows[0][0] == expected


@pytest.fixture
def open_net(sql):
    return sql.net("vagrant", "vagrant", "vagrant")


# Given a session from sign-in, and one from its refresh, then each gets a LiveKit token.
def test_session_from_sign_in_and_from_refresh_get_livekit_tokens(auth, functions_env, open_net):
    email = f"{uuid.uuid4().hex[:12]}@example.test"
    auth.sign_up(email)
    session = auth.sign_in(email)
    assert jwt.get_unverified_header(session.access_token)["alg"] == "ES256"
    reply = call_function("livekit-token", {"roomName": open_net, "participantName": "Ace"}, session.auth())
    assert reply.status == 200, reply
    assert reply.json["identity"] == session.user_id

    status, refreshed = auth.refresh(session.refresh_token)
    assert status == 200, refreshed
    reply = call_function("livekit-token", {"roomName": open_net, "participantName": "Ace"},
                          {"authorization": f"Bearer {refreshed['access_token']}", "content-type": "application/json"})
    assert reply.status == 200, reply


# Given a member who signed out, their refresh token is refused.
def test_after_sign_out_the_refresh_token_is_refused(auth):
    session = auth.sign_up()
    status, body = auth.call("POST", "/logout", token=session.access_token)
    assert status == 204, body
    status, body = auth.refresh(session.refresh_token)
    assert status == 400 and "access_token" not in (body or {}), body


def _claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# Given a token with the server's claims but signed by another key (under the server's key
# id, or another), or signed by the server's own key but expired: each is refused.
def test_tokens_from_another_key_or_expired_are_refused(auth, functions_env, open_net):
    session = auth.sign_up()
    claims = _claims_of(session.access_token)
    kid = jwt.get_unverified_header(session.access_token)["kid"]
    stranger = auth_server.new_signing_jwk()
    forged_same_kid = auth_server.sign_with({**stranger, "kid": kid}, claims)
    forged_own_kid = auth_server.sign_with(stranger, claims)
    now = int(time.time())
    expired = auth_server.sign_with(auth.server.signing_key, {**claims, "iat": now - 7200, "exp": now - 3600})
    legacy_wrong_secret = support.sign_user_token(session.user_id, secret="not-the-project-secret-" + "x" * 20)
    body = {"roomName": open_net, "participantName": "Ace"}
    for token in (forged_same_kid, forged_own_kid, expired, legacy_wrong_secret):
        reply = call_function("livekit-token", body, {"authorization": f"Bearer {token}",
                                                      "content-type": "application/json"})
        assert reply.status == 401, reply
        assert reply.json["error"] == "UNAUTHORIZED"
    # The control: the genuine token passes.
    assert call_function("livekit-token", body, session.auth()).status == 200


# What each function is called with: valid bodies, so only the caller decides the answer.
BODIES = {
    "livekit-token": ("POST", {"roomName": "test-room", "participantName": "Guest"}),
    "net-bridge": ("POST", {"sourceNetId": str(uuid.uuid4()), "targetNetId": str(uuid.uuid4()), "action": "link"}),
    "academy-request": ("POST", {"skillId": str(uuid.uuid4())}),
    "academy-accept": ("POST", {"requestId": str(uuid.uuid4())}),
    "notifications-subscribe": ("POST", {"endpoint": "https://push.example.test/guest",
                                         "p256dh": "B" + "A" * 86, "auth": "A" * 22}),
    "handle-rescue-request": ("POST", {"location": "Stanton", "flareType": "MEDICAL"}),
    "member-admin": ("POST", {"userId": str(uuid.uuid4()), "rank": "scout", "reason": "guest test"}),
    "health": ("GET", None),
}


def test_every_member_function_is_in_the_table():
    from nexus import registry

    assert set(BODIES) == set(registry.HTTP_FUNCTIONS) - {"livekit-webhook"}


# Given an anonymous sign-in (a guest), every function answers 403.
@pytest.mark.parametrize("name", sorted(BODIES))
def test_an_anonymous_sign_in_gets_403_from_every_function(auth, functions_env, name):
    guest = auth.anonymous()
    assert _claims_of(guest.access_token)["is_anonymous"] is True
    method, body = BODIES[name]
    reply = call_function(name, body, guest.auth(), method)
    assert reply.status == 403, reply
    assert reply.json["error"] == "FORBIDDEN"


# Given an anonymous sign-in, under RLS with its claims it reads no row of ours, even
# in tables that hold rows every member may read.
def test_an_anonymous_sign_in_reads_no_row_of_ours(auth, sql, database_url, open_net):
    import psycopg

    guest = auth.anonymous()
    member = auth.sign_up()
    claims = _claims_of(guest.access_token)
    member_claims = _claims_of(member.access_token)
    tables = [r[0] for r in sql.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                                        "WHERE schemaname = 'public' ORDER BY 1")]
    assert tables
    seen_by_member = 0
    with psycopg.connect(database_url, autocommit=True) as conn:

        def rows_read(table: str, as_claims: dict) -> int:
            """Rows the role reads under RLS; a table it may not read at all counts as none."""
            with conn.transaction(force_rollback=True):
                conn.execute("SET LOCAL ROLE authenticated")
                conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(as_claims),))
                try:
                    with conn.transaction():
                        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                except psycopg.errors.InsufficientPrivilege:
                    return 0

        for table in tables:
            assert rows_read(table, claims) == 0, table
            seen_by_member += rows_read(table, member_claims)
    # The control: a member's session reads rows (nets, their own profile) through the same policies.
    assert seen_by_member > 0


# Given a guest who adds an email and a password, they become a member with a profile, and
# their new session works with the functions.
def test_a_guest_who_adds_email_and_password_gets_a_profile(auth, sql, functions_env, open_net):
    guest = auth.anonymous()
    assert profiles(sql, guest.user_id) == []
    email = f"{uuid.uuid4().hex[:12]}@example.test"
    status, body = auth.call("PUT", "/user", {"email": email, "password": PASSWORD}, token=guest.access_token)
    assert status == 200, body
    assert profiles(sql, guest.user_id) == [(None, "vagrant")]
    session = auth.sign_in(email)
    assert session.user_id == guest.user_id
    reply = call_function("livekit-token", {"roomName": open_net, "participantName": "Newcomer"}, session.auth())
    assert reply.status == 200, reply
