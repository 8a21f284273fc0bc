"""A deleted member's access token stays valid until it expires (Supabase cannot revoke a JWT):
it must not act as them anywhere. Each function answers with an error envelope (401, 403 or
404), never 2xx or 500, and writes no row naming them. Hard delete (the auth.users row goes)
and the auth server's soft delete (deleted_at set; the row stays, so a foreign key to auth.users
would still be satisfied) alike."""

from __future__ import annotations

import uuid

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import Client


def _p256dh() -> str:
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()

FUNCTIONS = {
    "notifications-subscribe": ("functions.notifications.subscribe:app", "POST",
                                lambda sql: {"endpoint": f"https://push.example.test/{uuid.uuid4().hex}",
                                             "keys": {"p256dh": _p256dh(), "auth": "A" * 22}}),
    "handle-rescue-request": ("functions.notifications.rescue:app", "POST",
                              lambda sql: {"location": "Stanton, Crusader", "flareType": "MEDICAL"}),
    "academy-request": ("functions.academy.request:app", "POST",
                        lambda sql: {"skillId": sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id::text",
                                                        (f"Skill {uuid.uuid4().hex[:8]}",))}),
    "livekit-token": ("functions.livekit_token.app:app", "POST", lambda sql: {"roomName": sql.net()}),
    "member-admin": ("functions.member_admin.app:app", "POST",
                     lambda sql: {"userId": sql.member("vagrant").id, "rank": "scout",
                                   "reason": "promotion"}),
}

_TABLES = [("push_subscriptions", "user_id"), ("flares", "sender_id"), ("instruction_requests", "cadet_id"),
           ("notification_queue", "recipient_id"), ("profiles", "id")]


def _rows_naming(sql, uid: str) -> dict[str, int]:
    return {t: sql.one(f"SELECT count(*) FROM public.{t} WHERE {c} = %s", (uid,)) for t, c in _TABLES}


@pytest.mark.parametrize("how", ["hard", "soft"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_deleted_members_token_acts_for_no_one(push_env, sql, name, how):
    from nexus import registry

    path, method, body = FUNCTIONS[name]
    app = registry.load(path)
    member = sql.member("founder" if name == "member-admin" else "voyager")
    headers = member.auth()
    payload = body(sql)
    if how == "hard":
        sql.execute("DELETE FROM auth.users WHERE id = %s", (member.id,))
    else:
        sql.execute("UPDATE auth.users SET deleted_at = now() WHERE id = %s", (member.id,))
    reply = Client(app).request(method, payload, headers)
    assert reply.status in (401, 403, 404), reply
    assert reply.json["error"] in ("UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND"), reply
    assert _rows_naming(sql, member.id) == {t: 0 for t, _ in _TABLES}
