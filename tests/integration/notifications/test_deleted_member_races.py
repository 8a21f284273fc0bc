"""A member deleted while their own call waits on the deletion's locks (the deletion commits
while the call runs): every function that writes a row naming the caller answers as for a
deleted member, 403 or 404, and writes nothing; before, the row's foreign key to their profile
failed and the answer was a 500."""

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
