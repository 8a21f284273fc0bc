"""Issue 16 against the real livekit-server: rank and brig changes take effect in voice.

Tokens come from the real livekit-token; clients are real WebRTC participants; the server's
webhooks reach the real livekit-webhook through the functions gateway (so voice_presence is
LiveKit's word); member-admin and the livekit-access-sync schedule run in this process. What is
asserted is what the server does: its own participant list (RoomService), tracks forwarded,
participants disconnected.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest

from tests import support
from tests.livekit_server import clients
from tests.livekit_server.clients import Refused, joined
from tests.support import Client


def token_for(member, room: str) -> str:
    from functions.livekit_token.app import app

    reply = Client(app).post({"roomName": room, "participantName": "Ignored"}, member.auth())
    assert reply.status == 200, reply
    return reply.json["token"]


def admin(actor, member, **fields) -> dict:
    from functions.member_admin.app import app

    reply = Client(app).post({"userId": member.id, "reason": "live test", **fields}, actor.auth())
    assert reply.status == 200, reply
    return reply.json


def schedule() -> dict:
    from functions.member_admin.sync import handler

    return handler({"source": "aws.scheduler"}, None)


async def listed(livekit, room: str) -> dict:
    """The server's own participant list: identity -> ParticipantInfo."""
    answer = await clients.room_service(livekit.http_url, support.LIVEKIT_KEY, support.LIVEKIT_SECRET,
                                        "list_participants", room=room)
    return {p.identity: p for p in answer.participants}


async def until(check, timeout: float = 60.0, what: str = "the condition"):  # a guard only
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def present(sql, room: str, member) -> bool:
    """voice_presence has the member open in the room (the server's participant_joined arrived)."""
    return bool(sql.one("SELECT count(*) FROM public.voice_presence WHERE room_name = %s AND user_id = %s "
                        "AND left_at IS NULL", (room, member.id)))


def rank_of(info) -> str | None:
    return json.loads(info.metadata or "{}").get("rank")


def sources(info) -> list[str]:
    from livekit.protocol.models import TrackSource

    return [TrackSource.Name(t.source) for t in info.tracks]


async def publishing(livekit, room: str, member) -> list[str]:
    """The sources the server lists for the member once it lists any (a publish is acknowledged
    to the client a moment before every ListParticipants answer shows it)."""
    async def found():
        info = (await listed(livekit, room)).get(member.id)
        return sources(info) if info is not None and info.tracks else None
    return await until(found, what=f"{member.id}'s published track in the server's list")


# Given a scout publishing on a net, when a founder brigs them through member-admin, then the
# server has removed them by the time the answer arrives; rejoining with the token minted before
# the brig gets them removed again (the webhook's join check).
def test_brig_removes_a_publishing_scout_and_a_rejoin_with_the_old_token(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    founder, scout = sql.member("founder"), sql.member("scout")
    old_token = token_for(scout, net)

    async def scenario():
        async with joined(livekit.url, old_token) as s:
            await s.publish_microphone()
            await until(lambda: present(sql, net, scout), what="the scout's presence")
            assert await publishing(livekit, net, scout) == ["MICROPHONE"]

            answer = await asyncio.to_thread(admin, founder, scout, addRoles=["brig"])
            assert answer["livekit"] == {"applied": True, "removed": 1, "updated": 0, "pending": False}
            assert scout.id not in await listed(livekit, net)
            await asyncio.wait_for(s.disconnected.wait(), 15)

        # the old token still verifies at the server: the join itself must be undone
        try:
            async with joined(livekit.url, old_token) as again:
                await asyncio.wait_for(again.disconnected.wait(), 20)
        except Refused:
            pass  # removed before the client even finished connecting: as good
        await until(lambda: _absent(livekit, net, scout.id), what="the rejoined scout's removal")

    lk_call(scenario(), timeout=90)


async def _absent(livekit, room: str, identity: str) -> bool:
    return identity not in await listed(livekit, room)


# Given a scout publishing and a voyager talking on a net where scouts talk, when the scout is
# demoted to vagrant, then the server stops their microphone in place, they still hear the
# voyager, and their metadata says vagrant.
def test_demote_stops_publishing_but_still_hears(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    founder, scout, voyager = sql.member("founder"), sql.member("scout"), sql.member("voyager")
    tokens = {m.id: token_for(m, net) for m in (scout, voyager)}

    async def scenario():
        async with joined(livekit.url, tokens[scout.id]) as s, joined(livekit.url, tokens[voyager.id]) as v:
            await s.publish_microphone()
            await until(lambda: present(sql, net, scout), what="the scout's presence")
            sid_before = (await listed(livekit, net))[scout.id].sid

            answer = await asyncio.to_thread(admin, founder, scout, rank="vagrant")
            assert answer["livekit"]["updated"] == 1
            info = (await listed(livekit, net))[scout.id]
            assert (info.sid, info.permission.can_publish, info.permission.can_subscribe) == (sid_before, False, True)
            assert rank_of(info) == "vagrant"
            await until(lambda: _no_tracks(livekit, net, scout.id), what="the scout's track being removed")

            await v.publish_microphone()
            assert await s.wait_audio(voyager.id) > 0       # still hears
            with pytest.raises(Refused):
                await s.publish_microphone()                 # and may not speak again
            assert not s.disconnected.is_set()

    lk_call(scenario(), timeout=90)


async def _no_tracks(livekit, room: str, identity: str) -> bool:
    info = (await listed(livekit, room)).get(identity)
    return info is not None and not info.tracks


# Given a vagrant listening, when promoted to scout, then they publish in the same session
# (no reconnect) and the voyager hears them; the metadata says scout.
def test_promote_publishes_without_reconnecting(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    pioneer, vagrant, voyager = sql.member("pioneer"), sql.member("vagrant"), sql.member("voyager")
    tokens = {m.id: token_for(m, net) for m in (vagrant, voyager)}

    async def scenario():
        async with joined(livekit.url, tokens[vagrant.id]) as g, joined(livekit.url, tokens[voyager.id]) as v:
            await until(lambda: present(sql, net, vagrant), what="the vagrant's presence")
            sid_before = (await listed(livekit, net))[vagrant.id].sid

            await asyncio.to_thread(admin, pioneer, vagrant, rank="scout")
            info = (await listed(livekit, net))[vagrant.id]
            assert (info.sid, info.permission.can_publish, rank_of(info)) == (sid_before, True, "scout")

            await until(lambda: _local_may_publish(g), what="the client learning its new permission")
            await g.publish_microphone()
            assert await v.wait_audio(vagrant.id) > 0
            assert sources((await listed(livekit, net))[vagrant.id]) == ["MICROPHONE"]

    lk_call(scenario(), timeout=90)


async def _local_may_publish(participant) -> bool:
    permissions = getattr(participant.room.local_participant, "permissions", None)
    return permissions is None or bool(getattr(permissions, "can_publish", True))


# Given a scout and a voyager on a net, when min_rank_to_join is raised to voyager (plain SQL),
# then the schedule removes the scout and leaves the voyager.
def test_raising_min_rank_to_join_removes_a_connected_member(sql, livekit, lk_call):
    net = sql.net("scout", "scout", "scout")
    scout, voyager = sql.member("scout"), sql.member("voyager")
    tokens = {m.id: token_for(m, net) for m in (scout, voyager)}

    async def scenario():
        async with joined(livekit.url, tokens[scout.id]) as s, joined(livekit.url, tokens[voyager.id]):
            await until(lambda: present(sql, net, scout), what="the scout's presence")
            sql.execute("UPDATE public.voice_nets SET min_rank_to_join = 'voyager' WHERE code = %s", (net,))
            await asyncio.to_thread(schedule)
            people = await listed(livekit, net)
            assert scout.id not in people and voyager.id in people
            await asyncio.wait_for(s.disconnected.wait(), 15)

    lk_call(scenario(), timeout=90)


# Given a publishing scout, when someone brigs them with plain SQL while LiveKit is stopped, then
# the schedule cannot apply it and keeps it queued; once LiveKit runs again, it does.
def test_plain_sql_change_waits_while_livekit_is_stopped_then_applies(sql, livekit, lk_call, env):
    from shared import config

    env.setenv("LIVEKIT_API_TIMEOUT_SECONDS", "1")
    config.get_settings.cache_clear()
    net = sql.net("vagrant", "vagrant", "scout")
    scout = sql.member("scout")
    token = token_for(scout, net)

    async def scenario():
        async with joined(livekit.url, token) as s:
            await s.publish_microphone()
            await until(lambda: present(sql, net, scout), what="the scout's presence")
            sql.execute("UPDATE public.profiles SET roles = ARRAY['brigged'] WHERE id = %s", (scout.id,))

            os.kill(livekit.proc.pid, signal.SIGSTOP)        # LiveKit stopped: no answers at all
            try:
                first = await asyncio.to_thread(schedule)
            finally:
                os.kill(livekit.proc.pid, signal.SIGCONT)
            assert first["failed"] >= 1
            assert sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE user_id = %s "
                           "AND status = 'pending' AND last_error IS NOT NULL", (scout.id,)) == 1
            assert scout.id in await listed(livekit, net)    # nothing applied yet

            sql.execute("UPDATE nexus_private.livekit_access_jobs SET next_run_at = now() WHERE user_id = %s",
                        (scout.id,))                          # its backoff has passed
            await asyncio.to_thread(schedule)
            assert scout.id not in await listed(livekit, net)
            await asyncio.wait_for(s.disconnected.wait(), 15)

    lk_call(scenario(), timeout=90)


# Given a promotion whose job a worker took and then stalled on, and a demotion after it, the
# server ends with the demoted rights whichever finishes first: the demotion's job is not handed
# out while the promotion's is processing (one worker per member), and each job brings LiveKit to
# the rights *now*. Out of order: the stalled worker's lease runs out, the schedule applies the
# demotion, and the stalled worker finishes last.
# (two tests rather than parametrize: the namespace stand-ins do not carry parameters)
def test_promote_then_demote_applied_in_order_ends_demoted(sql, livekit, lk_call):
    _promote_then_demote(sql, livekit, lk_call, "promote job first")


def test_promote_then_demote_applied_out_of_order_ends_demoted(sql, livekit, lk_call):
    _promote_then_demote(sql, livekit, lk_call, "demote job first")


def _promote_then_demote(sql, livekit, lk_call, order: str) -> None:
    from collections import Counter

    from shared import db
    from shared.livekit_access import AccessSync
    from shared.livekit_rooms import RoomServiceClient

    net = sql.net("vagrant", "vagrant", "scout")
    vagrant = sql.member("vagrant")
    token = token_for(vagrant, net)
    rooms = RoomServiceClient(livekit.url, support.LIVEKIT_KEY, support.LIVEKIT_SECRET)

    def claim(worker: str) -> list[dict]:
        jobs = db.call("livekit_access_jobs_claim", p_worker=worker, p_limit=10, p_lease_seconds=60,
                       p_job_ids=None)["jobs"]
        return [j for j in jobs if j["userId"] == vagrant.id]

    def finish(job: dict, worker: str) -> None:
        written = AccessSync(rooms, worker)._apply(job, time.monotonic() + 60, Counter())  # a generous deadline
        db.call("livekit_access_jobs_report", p_worker=worker,
                p_done=[{"id": job["id"], "written": written}], p_failed=[])

    async def scenario():
        async with joined(livekit.url, token):
            await until(lambda: present(sql, net, vagrant), what="the vagrant's presence")
            sql.execute("DELETE FROM nexus_private.livekit_access_jobs WHERE user_id = %s", (vagrant.id,))
            sql.execute("UPDATE public.profiles SET rank = 'scout' WHERE id = %s", (vagrant.id,))
            [promote] = await asyncio.to_thread(claim, "w-promote")   # taken, then stalled
            sql.execute("UPDATE public.profiles SET rank = 'vagrant' WHERE id = %s", (vagrant.id,))
            assert await asyncio.to_thread(claim, "w-demote") == []   # not while the promotion's is processing
            if order == "promote job first":
                await asyncio.to_thread(finish, promote, "w-promote")
                await asyncio.to_thread(schedule)
            else:
                sql.execute("UPDATE nexus_private.livekit_access_jobs SET locked_at = now() - interval '5 minutes' "
                            "WHERE id = %s", (promote["id"],))         # the stalled worker's lease ran out
                await asyncio.to_thread(schedule)
                await asyncio.to_thread(finish, promote, "w-promote")
            info = (await listed(livekit, net))[vagrant.id]
            assert (info.permission.can_publish, info.permission.can_subscribe, rank_of(info)) == \
                (False, True, "vagrant")

    lk_call(scenario(), timeout=90)
