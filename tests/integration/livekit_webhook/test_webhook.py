"""livekit-webhook on real Postgres: who may deliver, what is stored, what presence shows."""

from __future__ import annotations

import base64
import datetime
import json
import time
import uuid

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit import api

from tests import support
from tests.integration.livekit_webhook import events as ev

NOW = time.time()


def deliver(hook, event: dict, **sign_args):
    body, headers = ev.signed(event, **sign_args)
    return hook.post(raw=body, headers=headers)


def presence(sql, room: str) -> dict[str, dict]:
    rows = sql.execute(
        "SELECT participant_sid, participant_identity, joined_at, left_at, left_reason, disconnect_reason, "
        "participant_metadata, user_id, room_sid, participant_name FROM public.voice_presence WHERE room_name = %s",
        (room,))
    keys = ("sid", "identity", "joined_at", "left_at", "left_reason", "disconnect_reason", "metadata", "user_id",
            "room_sid", "name")
    return {r[0]: dict(zip(keys, r)) for r in rows}


def open_sids(sql, room: str) -> set[str]:
    return {sid for sid, row in presence(sql, room).items() if row["left_at"] is None}


def jobs_for(sql, event_id: str) -> list[tuple]:
    return sql.execute("SELECT status, attempt FROM nexus_private.livekit_webhook_jobs WHERE event_id = %s",
                       (event_id,))


def joined(room, identity, sid, at, *, rs="RM_1", joined_at=None, **kw):
    return ev.participant_event("participant_joined", room, rs, identity, sid, at, joined_at or at, **kw)


def left(room, identity, sid, at, joined_at, *, rs="RM_1", kind="participant_left", **kw):
    return ev.participant_event(kind, room, rs, identity, sid, at, joined_at, **kw)


def ts(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


# --- who may deliver --------------------------------------------------------------


def test_event_signed_by_livekit_api_is_stored_and_applied(hook, sql, room):
    # Given a participant_joined event signed with livekit-api's own AccessToken().with_sha256()
    user = str(uuid.uuid4())
    event = joined(room, user, "PA_a1", NOW - 30, metadata={"userId": user, "rank": "scout"}, name="Ace")
    # When LiveKit delivers it
    reply = deliver(hook, event)
    # Then it is acknowledged only as stored and applied, and presence shows the participant
    assert reply.status == 200, reply
    assert reply.json == {"received": True, "status": "applied"}
    assert jobs_for(sql, event["id"]) == [("done", 1)]
    row = presence(sql, room)["PA_a1"]
    assert row["identity"] == user and row["left_at"] is None
    assert row["metadata"] == {"userId": user, "rank": "scout"}
    assert str(row["user_id"]) == user and row["room_sid"] == "RM_1" and row["name"] == "Ace"
    assert row["joined_at"] == ts(int((NOW - 30) * 1000) / 1000)


def test_the_rooms_turn_password_is_not_stored(hook, sql, room):
    # Given a join as the real server sends it: its room object carries the room's TURN password
    user = str(uuid.uuid4())
    event = joined(room, user, "PA_t1", NOW - 20)
    event["room"]["turnPassword"] = "s3cr3t-turn-credential"
    # When it is delivered
    reply = deliver(hook, event)
    # Then it is applied, and the stored event keeps everything but the password
    assert reply.status == 200 and reply.json["status"] == "applied", reply
    stored = sql.one("SELECT payload FROM nexus_private.livekit_webhook_jobs WHERE event_id = %s", (event["id"],))
    assert "turnPassword" not in stored["room"] and stored["room"]["name"] == room
    assert stored["participant"]["sid"] == "PA_t1"
    assert "s3cr3t-turn-credential" not in json.dumps(stored)


def test_bearer_prefix_is_accepted_too(hook, sql, room):
    event = joined(room, "u1", "PA_b1", NOW)
    body, headers = ev.signed(event)
    headers["authorization"] = "Bearer " + headers["authorization"]
    assert hook.post(raw=body, headers=headers).status == 200
    assert open_sids(sql, room) == {"PA_b1"}


def _unsigned(body):
    return None


def _tampered_claims(body):
    # A valid signature for a different body.
    return ev.sign(body + b" ")


def _expired(body):
    return ev.sign(body, ttl=datetime.timedelta(minutes=-5))


def _wrong_secret(body):
    return ev.sign(body, secret="another-livekit-secret-0123456789abcdef0123")


def _wrong_key(body):
    return ev.sign(body, key="APIotherkey")


def _no_sha256(body):
    return api.AccessToken(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).to_jwt()


def _alg_none(body):
    claims = {"iss": support.LIVEKIT_KEY, "exp": int(time.time()) + 300, "sha256": ev.body_hash(body)}
    return pyjwt.encode(claims, None, algorithm="none")


def _sha_not_base64(body):
    claims = {"iss": support.LIVEKIT_KEY, "exp": int(time.time()) + 300, "sha256": "***"}
    return pyjwt.encode(claims, support.LIVEKIT_SECRET, algorithm="HS256")


def _no_exp(body):
    claims = {"iss": support.LIVEKIT_KEY, "sha256": ev.body_hash(body)}
    return pyjwt.encode(claims, support.LIVEKIT_SECRET, algorithm="HS256")


def _garbage(body):
    return "not-a-jwt"


def _runbook_hmac(body):
    # The predecessor's scheme (a hex HMAC of the body) is not LiveKit's.
    import hashlib
    import hmac

    return hmac.new(support.LIVEKIT_SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("forge", [_unsigned, _tampered_claims, _expired, _wrong_secret, _wrong_key, _no_sha256,
                                   _alg_none, _sha_not_base64, _no_exp, _garbage, _runbook_hmac])
def test_unverifiable_deliveries_get_401_and_store_nothing(hook, sql, room, forge):
    event = joined(room, "u1", "PA_x1", NOW)
    body = ev.encode(event)
    token = forge(body)
    headers = {**ev.HEADERS, **({"authorization": token} if token else {})}
    reply = hook.post(raw=body, headers=headers)
    assert reply.status == 401, reply
    assert reply.json["error"] == "UNAUTHORIZED"
    assert jobs_for(sql, event["id"]) == [] and presence(sql, room) == {}


def test_tampered_body_gets_401(hook, sql, room):
    # Given a correctly signed delivery whose body is changed in transit
    event = joined(room, "u1", "PA_t1", NOW)
    body, headers = ev.signed(event)
    tampered = body.replace(b"PA_t1", b"PA_t2")
    assert hook.post(raw=tampered, headers=headers).status == 401
    assert presence(sql, room) == {}


def test_reserialized_body_gets_401(hook, sql, room):
    # The same JSON, re-serialized (what a proxy or a careless framework does), no longer matches.
    event = joined(room, "u1", "PA_r1", NOW)
    body, headers = ev.signed(event)
    reserialized = json.dumps(json.loads(body), indent=2).encode()
    assert json.loads(reserialized) == json.loads(body)
    assert hook.post(raw=reserialized, headers=headers).status == 401
    assert presence(sql, room) == {}


# --- malformed but signed ------------------------------------------------------------

MALFORMED = {
    "not json": b"{nope",
    "array": b"[1,2]",
    "no event": b'{"id":"EV_m1","createdAt":"1"}',
    "event not a string": b'{"event":5,"id":"EV_m2"}',
    "participant event without sid": b'{"event":"participant_joined","id":"EV_m3","room":{"name":"r"},'
                                     b'"participant":{"identity":"u"}}',
    "room event without sid": b'{"event":"room_finished","id":"EV_m4","room":{"name":"r"}}',
    "egress without id": b'{"event":"egress_ended","id":"EV_m5","egressInfo":{}}',
    "createdAt not a number": b'{"event":"room_started","id":"EV_m6","createdAt":"soon",'
                              b'"room":{"name":"r","sid":"RM"}}',
    "NaN": b'{"event":"track_published","id":"EV_m7","x":NaN}',
    "NUL escape": b'{"event":"track_published","id":"EV_m8","x":"a\\u0000b"}',
    "lone surrogate": b'{"event":"track_published","id":"EV_m9","x":"\\ud800"}',
    "latin-1": '{"event":"track_published","id":"EV_m10","x":"\xe9"}'.encode("latin-1"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_signed_but_malformed_payload_is_400(hook, sql, name):
    body = MALFORMED[name]
    reply = hook.post(raw=body, headers={**ev.HEADERS, "authorization": ev.sign(body)})
    assert reply.status == 400, reply
    assert reply.json["error"] == "BAD_REQUEST"
    assert sql.one("SELECT count(*) FROM nexus_private.livekit_webhook_jobs WHERE event_id LIKE 'EV_m%%'") == 0


def test_oversize_body_is_413_and_wrong_method_405(hook):
    body = b'{"event":"track_published","pad":"' + b"x" * 300_000 + b'"}'
    assert hook.post(raw=body, headers={**ev.HEADERS, "authorization": ev.sign(body)}).status == 413
    assert hook.request("GET").status == 405


def test_unknown_event_types_are_stored_and_acknowledged(hook, sql, room):
    event = {"event": "track_published", "id": ev.new_id(), "createdAt": str(int(NOW)),
             "room": {"name": room, "sid": "RM_1"}, "track": {"sid": "TR_1", "type": "AUDIO"}}
    reply = deliver(hook, event)
    assert reply.status == 200 and reply.json["status"] == "ignored"
    assert jobs_for(sql, event["id"]) == [("done", 1)]
    assert presence(sql, room) == {}


def test_event_without_id_is_deduplicated_by_its_body(hook, sql, room):
    # Older LiveKit servers send no id; the same body twice is still one event.
    event = joined(room, "u1", "PA_n1", NOW)
    del event["id"]
    assert deliver(hook, event).json["status"] == "applied"
    assert deliver(hook, event).json["status"] == "duplicate"
    body = ev.encode(event)
    assert jobs_for(sql, f"sha256:{ev.body_hash(body)}") == [("done", 1)]


# --- semantics -------------------------------------------------------------------------


def test_duplicate_delivery_changes_nothing(hook, sql, room):
    event = joined(room, "u1", "PA_d1", NOW)
    assert deliver(hook, event).json["status"] == "applied"
    before = sql.execute("SELECT * FROM public.voice_presence WHERE room_name = %s", (room,))
    reply = deliver(hook, event)
    assert reply.status == 200 and reply.json["status"] == "duplicate"
    assert sql.execute("SELECT * FROM public.voice_presence WHERE room_name = %s", (room,)) == before
    assert len(jobs_for(sql, event["id"])) == 1


@pytest.mark.parametrize("kind,reason", [("participant_left", "participant_left"),
                                         ("participant_connection_aborted", "connection_aborted")])
def test_leave_closes_only_that_sid(hook, sql, room, kind, reason):
    # Given two participants in a room
    deliver(hook, joined(room, "u1", "PA_1", NOW - 60))
    deliver(hook, joined(room, "u2", "PA_2", NOW - 50))
    # When one leaves (or its connection is aborted)
    assert deliver(hook, left(room, "u1", "PA_1", NOW - 10, NOW - 60, kind=kind)).status == 200
    # Then only that sid is closed, at the event's time
    rows = presence(sql, room)
    assert rows["PA_1"]["left_reason"] == reason and rows["PA_1"]["left_at"] == ts(int(NOW - 10))
    assert rows["PA_2"]["left_at"] is None


@pytest.mark.parametrize("order", ["leave_last", "leave_first"])
def test_late_leave_of_an_older_sid_never_closes_the_newer_session(hook, sql, room, order):
    # Given u1 joined as PA_old, then reconnected as PA_new (LiveKit kicks PA_old: DUPLICATE_IDENTITY)
    j_old = joined(room, "u1", "PA_old", NOW - 100)
    j_new = joined(room, "u1", "PA_new", NOW - 40)
    l_old = left(room, "u1", "PA_old", NOW - 40, NOW - 100, reason="DUPLICATE_IDENTITY")
    sequence = [j_old, j_new, l_old] if order == "leave_last" else [l_old, j_new, j_old]
    for event in sequence:
        assert deliver(hook, event).status == 200
    rows = presence(sql, room)
    assert rows["PA_new"]["left_at"] is None
    assert rows["PA_old"]["left_reason"] == "participant_left"
    assert rows["PA_old"]["disconnect_reason"] == "DUPLICATE_IDENTITY"


def test_dropped_duplicate_identity_leave_is_inferred_then_replaced_by_livekits_word(hook, sql, room):
    # Given LiveKit dropped the DUPLICATE_IDENTITY leave of PA_old
    deliver(hook, joined(room, "u1", "PA_old", NOW - 100))
    deliver(hook, joined(room, "u1", "PA_new", NOW - 40))
    rows = presence(sql, room)
    # Then PA_old is closed when PA_new began, PA_new stays
    assert rows["PA_old"]["left_reason"] == "duplicate_identity"
    assert rows["PA_old"]["left_at"] == ts(int((NOW - 40) * 1000) / 1000)
    assert rows["PA_new"]["left_at"] is None
    # And when the leave turns up after all, LiveKit's word replaces the inference
    deliver(hook, left(room, "u1", "PA_old", NOW - 39, NOW - 100, reason="DUPLICATE_IDENTITY"))
    assert presence(sql, room)["PA_old"]["left_reason"] == "participant_left"


def test_leave_before_join_stays_closed(hook, sql, room):
    deliver(hook, left(room, "u1", "PA_1", NOW - 10, NOW - 60))
    deliver(hook, joined(room, "u1", "PA_1", NOW - 60))
    rows = presence(sql, room)
    assert rows["PA_1"]["left_reason"] == "participant_left"
    assert rows["PA_1"]["joined_at"] == ts(int((NOW - 60) * 1000) / 1000)


def test_newer_event_metadata_wins_whatever_the_order(hook, sql, room):
    j = joined(room, "u1", "PA_1", NOW - 60, metadata={"rank": "scout"})
    lv = left(room, "u1", "PA_1", NOW - 5, NOW - 60, metadata={"rank": "voyager"})
    deliver(hook, lv)
    deliver(hook, j)
    assert presence(sql, room)["PA_1"]["metadata"] == {"rank": "voyager"}


def test_room_finished_closes_every_open_row_and_late_joins_stay_closed(hook, sql, room):
    # Given three participants in incarnation RM_1, one of whom already left
    deliver(hook, ev.room_event("room_started", room, "RM_1", NOW - 300))
    deliver(hook, joined(room, "u1", "PA_1", NOW - 200))
    deliver(hook, joined(room, "u2", "PA_2", NOW - 190))
    deliver(hook, left(room, "u2", "PA_2", NOW - 150, NOW - 190))
    # When the room finishes
    deliver(hook, ev.room_event("room_finished", room, "RM_1", NOW - 100, created=NOW - 300))
    rows = presence(sql, room)
    assert rows["PA_1"]["left_reason"] == "room_finished" and rows["PA_1"]["left_at"] == ts(int(NOW - 100))
    assert rows["PA_2"]["left_reason"] == "participant_left"
    # And a join into that incarnation arriving late is stored closed
    deliver(hook, joined(room, "u3", "PA_3", NOW - 180))
    assert presence(sql, room)["PA_3"]["left_reason"] == "room_finished"
    # While a new incarnation of the same room name is not touched by the old room's events
    deliver(hook, ev.room_event("room_started", room, "RM_2", NOW - 50))
    deliver(hook, joined(room, "u1", "PA_4", NOW - 40, rs="RM_2"))
    deliver(hook, ev.room_event("room_finished", room, "RM_1", NOW - 100, created=NOW - 300))  # redelivery
    assert open_sids(sql, room) == {"PA_4"}
    finished = sql.execute("SELECT room_sid, finished_at FROM public.livekit_rooms WHERE room_name = %s", (room,))
    assert finished == [("RM_2", None)]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]])
def test_livekit_rooms_follows_the_newest_incarnation(hook, sql, room, order):
    events = [ev.room_event("room_started", room, "RM_a", NOW - 300),
              ev.room_event("room_finished", room, "RM_a", NOW - 200, created=NOW - 300),
              ev.room_event("room_started", room, "RM_b", NOW - 100)]
    for i in order:
        deliver(hook, events[i])
    row = sql.execute("SELECT room_sid, started_at, finished_at FROM public.livekit_rooms WHERE room_name = %s",
                      (room,))
    assert row == [("RM_b", ts(int((NOW - 100) * 1000) / 1000), None)]


def test_room_finished_sets_finished_at_once(hook, sql, room):
    deliver(hook, ev.room_event("room_started", room, "RM_1", NOW - 300))
    finish = ev.room_event("room_finished", room, "RM_1", NOW - 10, created=NOW - 300)
    finish["roomEndReason"] = "DEPARTURE_TIMEOUT"
    deliver(hook, finish)
    assert sql.execute("SELECT finished_at, finished_reason, end_reason FROM public.livekit_rooms "
                       "WHERE room_name = %s", (room,)) == [(ts(int(NOW - 10)), "room_finished", "DEPARTURE_TIMEOUT")]


def test_egress_events_maintain_recordings_newest_wins(hook, sql, room):
    egress = f"EG_{uuid.uuid4().hex[:8]}"
    started = ev.egress_event("egress_started", room, egress, "EGRESS_STARTING", NOW - 100)
    active = ev.egress_event("egress_updated", room, egress, "EGRESS_ACTIVE", NOW - 90)
    ended = ev.egress_event("egress_ended", room, egress, "EGRESS_COMPLETE", NOW - 10)
    for e in (ended, active, started):  # worst order
        assert deliver(hook, e).status == 200
    row = sql.execute("SELECT status, room_name, ended_at IS NOT NULL FROM public.livekit_recordings "
                      "WHERE egress_id = %s", (egress,))
    assert row == [("EGRESS_COMPLETE", room, True)]


def test_runbook_monitoring_sql_works(hook, sql, room):
    # Runbook phase 7.2, verbatim.
    deliver(hook, joined(room, "u1", "PA_1", time.time() - 60, metadata={"userId": "u1", "rank": "voyager"}))
    deliver(hook, joined(room, "u2", "PA_2", time.time() - 3600, metadata={"rank": "scout"}))
    recent = sql.execute("""
        SELECT
          room_name,
          participant_identity,
          joined_at,
          left_at,
          participant_metadata->>'rank' as rank
        FROM voice_presence
        WHERE joined_at > now() - interval '1 hour'
        ORDER BY joined_at DESC
        LIMIT 20;""")
    assert (room, "u1", "voyager") in {(r[0], r[1], r[4]) for r in recent}
    stale = sql.one("""
        SELECT COUNT(*) as stale_count
        FROM voice_presence
        WHERE left_at IS NULL
          AND joined_at < now() - interval '10 minutes';""")
    assert stale >= 1


def test_members_read_presence_and_rooms_but_nothing_else(hook, sql, room):
    deliver(hook, joined(room, "u1", "PA_1", NOW))
    deliver(hook, ev.room_event("room_started", room, "RM_1", NOW))
    member = sql.member("vagrant")

    def as_role(role, query, claims=None):
        with sql.conn.transaction():
            sql.execute(f"SET LOCAL ROLE {role}")
            if claims:
                sql.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            return sql.execute(query)  # SET LOCAL ends with the transaction

    claims = {"sub": member.id, "role": "authenticated"}
    assert as_role("authenticated", f"SELECT participant_sid FROM public.voice_presence WHERE room_name = '{room}'",
                   claims) == [("PA_1",)]
    assert as_role("authenticated", f"SELECT room_sid FROM public.livekit_rooms WHERE room_name = '{room}'",
                   claims) == [("RM_1",)]
    import psycopg

    for query in ("SELECT 1 FROM public.livekit_recordings", "SELECT 1 FROM nexus_private.livekit_webhook_jobs",
                  f"UPDATE public.voice_presence SET left_at = now(), left_reason = 'x' WHERE room_name = '{room}'",
                  "INSERT INTO public.livekit_rooms (room_name, room_sid, last_event_at) VALUES ('x', 'y', now())"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role("authenticated", query, claims)
    for query in ("SELECT 1 FROM public.voice_presence", "SELECT 1 FROM public.livekit_rooms"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role("anon", query)
    for fn in ("livekit_webhook_ingest('x', '{}')", "livekit_webhook_jobs_claim('w')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role("authenticated", f"SELECT public.{fn}", claims)


def test_voice_presence_is_in_the_realtime_publication(sql):
    assert sql.one("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'supabase_realtime' "
                   "AND schemaname = 'public' AND tablename = 'voice_presence'") == 1


# --- through Lambda ----------------------------------------------------------------------


@pytest.mark.parametrize("b64", [True, False])
def test_function_url_event_through_the_lambda_handler(env, sql, room, b64):
    from functions.livekit_webhook.app import handler

    event = joined(room, "u1", "PA_l1", NOW)
    body, headers = ev.signed(event)
    out = handler(ev.function_url_event(body, headers, b64=b64), ev.LambdaContext())
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"])["status"] == "applied"
    assert open_sids(sql, room) == {"PA_l1"}
    # A base64 body whose decoded bytes were altered is still caught.
    other = joined(room, "u2", "PA_l2", NOW)
    body2, headers2 = ev.signed(other)
    out = handler(ev.function_url_event(body2.replace(b"u2", b"u3"), headers2, b64=b64), ev.LambdaContext())
    assert out["statusCode"] == 401
    assert open_sids(sql, room) == {"PA_l1"}


# --- the edge never answers 5xx ------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
event_like = st.fixed_dictionaries(
    {"event": st.sampled_from(["participant_joined", "participant_left", "participant_connection_aborted",
                               "room_started", "room_finished", "egress_ended", "track_published"]) | st.text()},
    optional={"id": st.text(max_size=140) | st.integers(), "createdAt": st.integers() | st.text(max_size=12),
              "room": json_values | st.fixed_dictionaries({"name": st.text(max_size=20), "sid": st.text(max_size=20)}),
              "participant": json_values | st.fixed_dictionaries({"sid": st.text(max_size=20),
                                                                   "identity": st.text(max_size=20),
                                                                   "metadata": st.text(max_size=30),
                                                                   "joinedAtMs": st.text(max_size=22)}),
              "egressInfo": json_values, "extra": json_values})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=event_like)
def test_signed_arbitrary_events_never_5xx(hook, payload):
    body = json.dumps(payload).encode()
    reply = hook.post(raw=body, headers={**ev.HEADERS, "authorization": ev.sign(body)})
    assert reply.status in (200, 400), reply


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), auth=st.none() | st.text(max_size=200))
def test_unsigned_garbage_is_401(hook, body, auth):
    headers = dict(ev.HEADERS)
    if auth is not None:
        headers["authorization"] = auth
    try:
        reply = hook.post(raw=body, headers=headers)
    except UnicodeEncodeError:  # a header value HTTP cannot carry never reaches us
        return
    assert reply.status == 401, reply
