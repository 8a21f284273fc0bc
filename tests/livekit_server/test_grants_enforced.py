"""The grants our tokens carry, enforced by a real livekit-server against real WebRTC clients.

Every token here comes from the real livekit-token function (or academy-accept) over the
session's PostgreSQL; what is asserted is what the server lets through: tracks and data another
participant receives, what RoomService reports, and joins it refuses.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from shared.ranks import RANKS
from tests import support
from tests.livekit_server import clients
from tests.livekit_server.clients import Refused, joined
from tests.support import Client


def token_for(member, room: str) -> dict:
    from functions.livekit_token.app import app

    reply = Client(app).post({"roomName": room, "participantName": "Ignored"}, member.auth())
    assert reply.status == 200, reply
    return reply.json


def rooms(livekit, call: str, **request):
    return clients.room_service(livekit.http_url, support.LIVEKIT_KEY, support.LIVEKIT_SECRET, call, **request)


async def published_sources(livekit, room: str, identity: str, *, until: list[str] | None = None) -> list[str]:
    """The sources RoomService lists for `identity`'s tracks (asking again, for at most 60 s (a guard),
    until they are `until`: the server lists a track once its media arrives)."""
    from livekit.protocol.models import TrackSource

    for _ in range(300):
        answer = await rooms(livekit, "list_participants", room=room)
        found = [TrackSource.Name(t.source) for p in answer.participants if p.identity == identity for t in p.tracks]
        if until is None or found == until:
            break
        await asyncio.sleep(0.2)
    return found


# Given a demo net (anyone joins and listens, scouts talk), when a scout publishes a microphone,
# then a voyager and a vagrant both receive its audio; the vagrant's own microphone and data are
# refused by the server: nothing of it reaches the others and RoomService lists no track of it.
def test_scout_is_heard_and_a_vagrant_only_listens(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    scout, voyager, vagrant = sql.member("scout"), sql.member("voyager"), sql.member("vagrant")
    tokens = {m.rank: token_for(m, net) for m in (scout, voyager, vagrant)}
    assert tokens["scout"]["serverUrl"] == livekit.url
    assert tokens["vagrant"]["grants"]["canPublish"] is False

    async def scenario():
        async with joined(livekit.url, tokens["scout"]["token"]) as s, \
                joined(livekit.url, tokens["voyager"]["token"]) as v, \
                joined(livekit.url, tokens["vagrant"]["token"]) as g:
            assert (s.identity, v.identity, g.identity) == (scout.id, voyager.id, vagrant.id)
            await s.publish_microphone()
            assert await v.wait_audio(scout.id) > 0
            assert await g.wait_audio(scout.id) > 0

            with pytest.raises(Refused):
                await g.publish_microphone()
            try:
                for _ in range(3):
                    await g.send_data(b"from-the-vagrant")
            except Refused:
                pass  # refused outright is as good as dropped
            await s.send_data(b"from-the-scout")
            assert await v.wait_data(b"from-the-scout") == scout.id
            assert await g.wait_data(b"from-the-scout") == scout.id
            # the scout's packet was sent after the vagrant's and has arrived: the vagrant's never will
            assert [d for _, d in v.data + s.data if d == b"from-the-vagrant"] == []
            assert vagrant.id not in v.tracks and vagrant.id not in s.tracks
            assert await published_sources(livekit, net, vagrant.id) == []
            assert await published_sources(livekit, net, scout.id) == ["MICROPHONE"]

    lk_call(scenario())


# Given a net every rank may talk on (vagrants excepted), when each rank tries a camera and a
# screen share, then the server refuses both for everyone, while a microphone still works.
def test_camera_and_screen_share_are_refused_for_every_rank(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    members = [sql.member(rank) for rank in RANKS]
    tokens = [token_for(m, net)["token"] for m in members]

    async def one(member, token):
        async with joined(livekit.url, token) as p:
            outcomes = {}
            for name, publish in (("camera", p.publish_camera), ("screen", p.publish_screen_share)):
                try:
                    await publish()
                    outcomes[name] = "published"
                except Refused:
                    outcomes[name] = "refused"
            if member.rank != "vagrant":
                await p.publish_microphone()
            outcomes["sources"] = await published_sources(
                livekit, net, member.id, until=None if member.rank == "vagrant" else ["MICROPHONE"])
            return outcomes

    async def scenario():
        return await asyncio.gather(*(one(m, t) for m, t in zip(members, tokens)))

    results = lk_call(scenario(), timeout=120)
    for member, outcome in zip(members, results):
        assert outcome["camera"] == "refused" and outcome["screen"] == "refused", (member.rank, outcome)
        assert outcome["sources"] == ([] if member.rank == "vagrant" else ["MICROPHONE"]), (member.rank, outcome)


# Given two nets bridged by a founder, when a scout asks livekit-token for one, then the bridged
# net's token in the same answer joins the bridged net's room, and is heard there.
def test_bridged_token_joins_the_bridged_room(sql, livekit, lk_call):
    from functions.net_bridge.app import app as bridge_app

    a, b = sql.net("vagrant", "vagrant", "scout"), sql.net("vagrant", "vagrant", "scout")
    ids = dict(sql.execute("SELECT code, id::text FROM public.voice_nets WHERE code = ANY(%s)", ([a, b],)))
    founder, scout, listener = sql.member("founder"), sql.member("scout"), sql.member("voyager")
    linked = Client(bridge_app).post({"sourceNetId": ids[a], "targetNetId": ids[b], "action": "link"}, founder.auth())
    assert linked.status in (200, 201), linked
    answer = token_for(scout, a)
    assert [x["roomName"] for x in answer["bridges"]] == [b]
    bridged = answer["bridges"][0]
    listener_token = token_for(listener, b)["token"]

    async def scenario():
        async with joined(livekit.url, answer["token"]) as on_a, joined(livekit.url, bridged["token"]) as on_b, \
                joined(livekit.url, listener_token) as hears_b:
            assert on_a.room.name == a and on_b.room.name == b
            await on_b.publish_microphone()
            assert await hears_b.wait_audio(scout.id) > 0
            in_b = await rooms(livekit, "list_participants", room=b)
            assert scout.id in {p.identity for p in in_b.participants}

    lk_call(scenario())


# Given a sim pod accepted by a guide, when its cadet (token from livekit-token) and its guide
# (token from academy-accept) join, then both are in its room, which the server created with our
# empty and departure timeouts; a third member is refused a token for it.
def test_sim_pod_cadet_and_guide_join_with_our_timeouts(sql, livekit, lk_call):
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app
    from functions.livekit_token.app import app as token_app
    from shared.livekit_tokens import sim_pod_room_config

    skill = str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Pod {uuid.uuid4().hex[:8]}",)))
    cadet, guide, outsider = sql.member("scout"), sql.member("voyager"), sql.member("pioneer")
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    request_id = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    pod = Client(accept_app).post({"requestId": request_id}, guide.auth()).json
    guide_token = pod["connectionTokens"][0]["token"]
    cadet_token = token_for(cadet, pod["roomName"])["token"]
    refused = Client(token_app).post({"roomName": pod["roomName"]}, outsider.auth())
    assert refused.status == 403, refused

    async def scenario():
        async with joined(livekit.url, cadet_token) as c, joined(livekit.url, guide_token) as g:
            assert c.room.name == g.room.name == pod["roomName"]
            await g.publish_microphone()
            assert await c.wait_audio(guide.id) > 0
            listed = await rooms(livekit, "list_rooms", names=[pod["roomName"]])
            inside = await rooms(livekit, "list_participants", room=pod["roomName"])
            return ([(r.name, r.empty_timeout, r.departure_timeout) for r in listed.rooms],
                    {p.identity for p in inside.participants})

    expected = sim_pod_room_config()
    listed, inside = lk_call(scenario())
    assert listed == [(pod["roomName"], expected["emptyTimeout"], expected["departureTimeout"])]
    assert inside == {cadet.id, guide.id}


# Given a token signed with a secret that is not the server's, when a client connects, then the
# server refuses it; a token minted for one room puts its holder in that room and no other.
def test_foreign_secret_is_refused_and_a_token_joins_only_its_room(sql, livekit, lk_call):
    from livekit import api

    net, other = sql.net("vagrant", "vagrant", "scout"), sql.net("vagrant", "vagrant", "scout")
    scout, voyager = sql.member("scout"), sql.member("voyager")
    forged = (api.AccessToken(support.LIVEKIT_KEY, "another-secret-" + "x" * 40).with_identity(scout.id)
              .with_grants(api.VideoGrants(room_join=True, room=net, can_publish=True)).to_jwt())
    genuine = token_for(scout, net)["token"]
    elsewhere = token_for(voyager, other)["token"]

    async def scenario():
        with pytest.raises(Refused):
            await clients.connect(livekit.url, forged)
        async with joined(livekit.url, genuine) as s, joined(livekit.url, elsewhere) as o:
            assert s.room.name == net and o.room.name == other
            in_net = await rooms(livekit, "list_participants", room=net)
            in_other = await rooms(livekit, "list_participants", room=other)
            return {p.identity for p in in_net.participants}, {p.identity for p in in_other.participants}

    in_net, in_other = lk_call(scenario())
    assert in_net == {scout.id} and in_other == {voyager.id}


# The metadata the server hands other participants is the one our token carries.
def test_other_participants_see_our_metadata_and_callsign(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    scout, voyager = sql.member("scout", callsign="Nomad-7"), sql.member("voyager")
    t1, t2 = token_for(scout, net)["token"], token_for(voyager, net)["token"]

    async def scenario():
        async with joined(livekit.url, t1), joined(livekit.url, t2) as v:
            async def seen():
                while scout.id not in v.room.remote_participants:
                    await asyncio.sleep(0.05)
                return v.room.remote_participants[scout.id]
            remote = await asyncio.wait_for(seen(), 10)
            return remote.name, remote.metadata

    name, metadata = lk_call(scenario())
    assert name == "Nomad-7"
    assert json.loads(metadata) == {"userId": scout.id, "rank": "scout"}
