"""Fixtures for member administration: a Twirp fake of LiveKit's RoomService
holding connected participants, and helpers to put a member in a room the way
livekit-token and the webhook would have (participant in LiveKit, open presence)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests import support
from tests.peers.livekit_twirp import FakeParticipant, LiveKitTwirpFake


@pytest.fixture
def lk(env):
    from shared import config

    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET) as fake:
        env.setenv("LIVEKIT_URL", fake.url)
        config.get_settings.cache_clear()
        yield fake


def permission(*, publish: bool, subscribe: bool = True) -> dict[str, Any]:
    """A ParticipantPermission as livekit-token mints it (protobuf field names)."""
    return {"can_subscribe": subscribe, "can_publish": publish, "can_publish_data": publish,
            "can_publish_sources": ["MICROPHONE"] if publish else []}


def connect(sql: support.Db, lk: LiveKitTwirpFake, member: support.Member, room: str, *,
            publish: bool, subscribe: bool = True) -> FakeParticipant:
    """`member` is in `room`: LiveKit lists them and voice_presence has them open. Joined two hours
    ago, so the runbook's "joined in the last hour" queries other tests run see none of these."""
    sid = f"PA_{uuid.uuid4().hex[:12]}"
    p = lk.add_participant(room, member.id, sid=sid, permission=permission(publish=publish, subscribe=subscribe),
                           metadata=json.dumps({"userId": member.id, "rank": member.rank}))
    sql.execute("INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, user_id, "
                "joined_at, last_event_at) VALUES (%s, %s, %s, %s, now() - interval '2 hours', now())",
                (room, member.id, sid, member.id))
    return p


def rights_in(lk: LiveKitTwirpFake, room: str, member: support.Member) -> dict[str, Any] | None:
    """What LiveKit holds for the member now: None if not in the room."""
    p = lk.participant(room, member.id)
    if p is None:
        return None
    perm = p.permission
    return {"sid": p.sid, "subscribe": bool(perm.get("can_subscribe")), "publish": bool(perm.get("can_publish")),
            "data": bool(perm.get("can_publish_data")), "sources": list(perm.get("can_publish_sources") or []),
            "rank": json.loads(p.metadata or "{}").get("rank")}


def audit_rows(sql: support.Db, member_id: str) -> list[tuple]:
    return sql.execute("SELECT actor, actor_id::text, actor_label, before, after, reason FROM public.admin_audit "
                       "WHERE member_id = %s ORDER BY id", (member_id,))


def jobs_for(sql: support.Db, member_id: str) -> int:
    return sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE user_id = %s", (member_id,))


def interposed_rooms(url: str, identity: str, *, before_write=None, after_write=None):
    """The real RoomService client, with a step of the test's run once, just before (or just after)
    the first UpdateParticipant for `identity`: how a change lands while a job is mid-write."""
    from shared.livekit_rooms import RoomServiceClient

    class Interposed(RoomServiceClient):
        fired = False

        def update_participant(self, room, who, **kwargs):
            first = who == identity and not Interposed.fired
            if first:
                Interposed.fired = True
                if before_write:
                    before_write()
            answer = super().update_participant(room, who, **kwargs)
            if first and after_write:
                after_write()
            return answer

    return Interposed(url, support.LIVEKIT_KEY, support.LIVEKIT_SECRET)
