"""A member deleted while a call waits on the deletion's locks (the deletion commits while the
call runs). The caller deleted: every function that writes a row naming them answers as for a
deleted member, 403 or 404, and writes nothing. Another member deleted (a responder, a guide the
call notifies): the call still succeeds without them; before, its notification to them failed
its foreign key and the caller got a 500."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.notifications.test_deleted_member_tokens import _p256dh, _rows_naming, _TABLES
from tests.integration.test_member_deletion_races import _while_deleting
from tests.support import Client


def _net_id(sql) -> str:
    return sql.one("SELECT id::text FROM public.voice_nets WHERE code = %s", (sql.net(),))


CALLS = {
    "notifications-subscribe": ("functions.notifications.subscribe:app", lambda sql: {
        "endpoint": f"https://push.example.test/{uuid.uuid4().hex}", "keys": {"p256dh": _p256dh(), "auth": "A" * 22}}),
    "handle-rescue-request": ("functions.notifications.rescue:app",
                              lambda sql: {"location": "Stanton, Crusader", "flareType": "MEDICAL"}),
    "academy-request": ("functions.academy.request:app", lambda sql: {"skillId": sql.one(
        "INSERT INTO public.skills (name) VALUES (%s) RETURNING id::text", (f"Skill {uuid.uuid4().hex[:8]}",))}),
    "net-bridge": ("functions.net_bridge.app:app", lambda sql: {"sourceNetId": _net_id(sql), "targetNetId": _net_id(sql),
                                                                  "action": "link"}),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_member_deleted_during_their_call_gets_no_500(push_env, sql, name):
    from nexus import registry

    path, body = CALLS[name]
    app = registry.load(path)
    member = sql.member("founder")
    payload, headers = body(sql), member.auth()
    reply = _while_deleting(sql, member.id, lambda: Client(app).post(payload, headers))
    assert reply.status in (403, 404), reply
    assert _rows_naming(sql, member.id) == {t: 0 for t, _ in _TABLES}
    if name == "net-bridge":
        assert sql.one("SELECT count(*) FROM public.voice_net_bridges WHERE source_net_id = %s",
                       (payload["sourceNetId"],)) == 0


# Given a responder whose deletion is committing while another member launches a flare, the
# flare still goes out (before: its notification to the responder failed its foreign key and the
# sender got a 500, the flare lost) and nothing is queued for the deleted responder.
def test_a_flare_launched_while_a_responder_is_deleted_goes_out(push_env, sql):
    from functions.notifications.rescue import app as rescue

    responder, sender = sql.member("scout", ["Medic"]), sql.member("scout")
    headers = sender.auth()
    reply = _while_deleting(sql, responder.id, lambda: Client(rescue).post(
        {"location": "Stanton, Crusader", "flareType": "MEDICAL"}, headers))
    assert reply.status == 202, reply
    assert sql.one("SELECT count(*) FROM public.flares WHERE sender_id = %s", (sender.id,)) == 1
    assert _rows_naming(sql, responder.id) == {t: 0 for t, _ in _TABLES}


# Given a certified guide whose deletion is committing while a cadet asks for instruction, the
# request is made (before: its notification to that guide failed: 500).
def test_a_request_made_while_a_guide_is_deleted_goes_out(push_env, sql):
    from functions.academy.request import app as request

    guide, cadet = sql.member("voyager"), sql.member("vagrant")
    skill = sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id::text", (f"Skill {uuid.uuid4().hex[:8]}",))
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    headers = cadet.auth()
    reply = _while_deleting(sql, guide.id, lambda: Client(request).post({"skillId": skill}, headers))
    assert reply.status == 201, reply
    assert sql.one("SELECT count(*) FROM public.instruction_requests WHERE cadet_id = %s", (cadet.id,)) == 1
    assert _rows_naming(sql, guide.id) == {t: 0 for t, _ in _TABLES}
