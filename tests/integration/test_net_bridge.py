"""net-bridge against real Postgres with the real migrations."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import STATUS_BY_CODE
from tests.support import Client


@pytest.fixture
def client(env):
    from functions.net_bridge.app import app

    return Client(app)


def net_id(sql, **thresholds) -> str:
    return str(sql.one("SELECT id FROM public.voice_nets WHERE code = %s", (sql.net(**thresholds),)))


def bridges_between(sql, a: str, b: str) -> list[tuple]:
    return sql.execute(
        "SELECT id, source_net_id::text, target_net_id::text FROM public.voice_net_bridges "
        "WHERE least(source_net_id, target_net_id) = least(%s::uuid, %s::uuid) "
        "AND greatest(source_net_id, target_net_id) = greatest(%s::uuid, %s::uuid)", (a, b, a, b))


def bridge(a: str, b: str, action: str = "link") -> dict:
    return {"sourceNetId": a, "targetNetId": b, "action": action}


# Given two nets and a founder, when they link A->B and then B->A,
# then the first answers 201 with the runbook's row and the second 200 with the same bridge.
def test_link_either_way_round_gives_one_bridge(client, sql):
    founder = sql.member("founder")
    a, b = net_id(sql), net_id(sql)

    first = client.post(bridge(a, b), founder.auth())
    assert first.status == 201, first
    row = first.json
    assert set(row) == {"id", "source_net_id", "target_net_id", "created_by", "created_at"}
    assert (row["source_net_id"], row["target_net_id"], row["created_by"]) == (a, b, founder.id)

    again = client.post(bridge(b, a), founder.auth())
    assert again.status == 200, again
    assert again.json == row
    assert client.post(bridge(a, b), sql.member("pioneer").auth()).json == row
    assert len(bridges_between(sql, a, b)) == 1


# Given A and B bridged A->B, when a founder unlinks B->A, then the bridge is gone (200),
# and unlinking again answers 404.
def test_unlink_in_the_other_order_removes_it(client, sql):
    founder = sql.member("founder")
    a, b = net_id(sql), net_id(sql)
    created = client.post(bridge(a, b), founder.auth()).json

    removed = client.post(bridge(b, a, "unlink"), founder.auth())
    assert removed.status == 200, removed
    assert removed.json["id"] == created["id"]
    assert bridges_between(sql, a, b) == []

    gone = client.post(bridge(b, a, "unlink"), founder.auth())
    assert gone.status == 404 and gone.json["error"] == "NOT_FOUND"


@pytest.mark.parametrize("rank", ["vagrant", "scout", "voyager"])
def test_below_founder_is_refused_and_nothing_is_written(client, sql, rank):
    a, b = net_id(sql), net_id(sql)
    reply = client.post(bridge(a, b), sql.member(rank).auth())
    assert reply.status == 403, reply
    assert reply.json["error"] == "INSUFFICIENT_CLEARANCE"
    assert reply.json["details"] == {"required": "founder", "rank": rank}
    assert bridges_between(sql, a, b) == []


def test_below_founder_cannot_unlink_either(client, sql):
    a, b = net_id(sql), net_id(sql)
    client.post(bridge(a, b), sql.member("founder").auth())
    reply = client.post(bridge(a, b, "unlink"), sql.member("voyager").auth())
    assert reply.status == 403 and reply.json["error"] == "INSUFFICIENT_CLEARANCE"
    assert len(bridges_between(sql, a, b)) == 1


def test_brigged_founder_is_forbidden(client, sql):
    a, b = net_id(sql), net_id(sql)
    reply = client.post(bridge(a, b), sql.member("pioneer", ["brigged"]).auth())
    assert reply.status == 403 and reply.json["error"] == "FORBIDDEN"
    assert bridges_between(sql, a, b) == []


def test_unknown_net_is_404_and_names_it(client, sql):
    a, ghost = net_id(sql), str(uuid.uuid4())
    for body in (bridge(a, ghost), bridge(ghost, a), bridge(a, ghost, "unlink")):
        reply = client.post(body, sql.member("founder").auth())
        assert reply.status == 404, reply
        assert reply.json["details"] == {"missing": [ghost]}
    assert sql.one("SELECT count(*) FROM public.voice_net_bridges WHERE %s::uuid IN (source_net_id, target_net_id)",
                   (a,)) == 0


def test_a_net_cannot_be_bridged_to_itself(client, sql):
    a = net_id(sql)
    reply = client.post(bridge(a, a), sql.member("founder").auth())
    assert reply.status == 400 and reply.json["error"] == "BAD_REQUEST"
    assert "targetNetId" in reply.json["details"]["fields"]


@pytest.mark.parametrize("body", [
    {"sourceNetId": "net-a", "targetNetId": str(uuid.uuid4()), "action": "link"},
    {"sourceNetId": str(uuid.uuid4()), "targetNetId": str(uuid.uuid4()), "action": "merge"},
    {"sourceNetId": str(uuid.uuid4()), "action": "link"},
    {"sourceNetId": 7, "targetNetId": None, "action": ["link"]},
])
def test_malformed_bodies_are_400(client, sql, body):
    reply = client.post(body, sql.member("founder").auth())
    assert reply.status == 400 and reply.json["error"] == "BAD_REQUEST", reply
    assert reply.json["details"]["fields"]


def test_missing_token_is_401(client, sql):
    reply = client.post(bridge(net_id(sql), net_id(sql)), {"content-type": "application/json"})
    assert reply.status == 401


# Given many founders racing to link the same pair in both directions,
# then exactly one creates it (201), every other answer is that bridge (200).
def test_concurrent_links_create_one_bridge(client, sql):
    a, b = net_id(sql), net_id(sql)
    founders = [sql.member("founder") for _ in range(8)]
    gate = threading.Barrier(len(founders))
    replies: list = [None] * len(founders)

    def link(i: int) -> None:
        pair = (a, b) if i % 2 else (b, a)
        gate.wait()
        replies[i] = client.post(bridge(*pair), founders[i].auth())

    threads = [threading.Thread(target=link, args=(i,)) for i in range(len(founders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] * 7 + [201], replies
    assert len({r.json["id"] for r in replies}) == 1
    assert len(bridges_between(sql, a, b)) == 1


@pytest.fixture(scope="module")
def founder(sql):
    return sql.member("founder")


# Hypothesis: whatever a founder sends, the answer is never a 5xx and always the envelope.
_ids = st.one_of(st.uuids().map(str), st.text(max_size=40), st.integers(), st.none(), st.booleans(),
                 st.lists(st.integers(), max_size=2), st.floats(allow_nan=False, allow_infinity=False))
_bodies = st.one_of(
    st.fixed_dictionaries({"sourceNetId": _ids, "targetNetId": _ids,
                           "action": st.one_of(st.sampled_from(["link", "unlink", "LINK", ""]), st.text(max_size=8))}),
    st.dictionaries(st.text(max_size=12), st.recursive(st.none() | st.booleans() | st.text(max_size=10),
                                                        lambda inner: st.lists(inner, max_size=3), max_leaves=5),
                    max_size=4),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=20),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_bad_input_never_yields_a_5xx(client, founder, body):
    reply = client.request("POST", headers=founder.auth(), raw=json.dumps(body).encode())
    assert reply.status < 500, reply
    if reply.status >= 400:
        assert STATUS_BY_CODE[reply.json["error"]] == reply.status

