"""RoomService for real: the presence reconciler and sim-pod expiry against livekit-server.

The reconciler tests use a server of their own whose webhook URL goes through a TCP proxy the
test controls (the server reads its webhook URLs only at start), so deliveries can be lost.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests import support
from tests.livekit_server.clients import connect, joined
from tests.livekit_server.fixtures import serving
from tests.livekit_server.test_grants_enforced import token_for
from tests.livekit_server.test_webhooks_real import eventually, open_sessions, sessions
from tests.peers.tcp_proxy import TcpProxy
from tests.support import Client


class Deliveries:
    """The webhook path of `lossy`: a proxy in front of the functions that can be cut and restored."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.proxy = TcpProxy(upstream, lifetime=900).__enter__()
        self.port = self.proxy.port

    def cut(self) -> None:
        self.proxy.close()  # connection refused: LiveKit's deliveries fail

    def restore(self) -> None:
        self.proxy = TcpProxy(self.upstream, listen_port=self.port, lifetime=900).__enter__()

    def close(self) -> None:
        self.proxy.close()


@pytest.fixture(scope="module")
def deliveries(functions):
    d = Deliveries(functions.port)
    yield d
    d.close()


@pytest.fixture(scope="module")
def lossy(livekit_binary, deliveries):
    """A livekit-server of this module's own, its webhooks through `deliveries`."""
    yield from serving(livekit_binary, deliveries.port)


@pytest.fixture
def on_lossy(env, lossy):
    env.setenv("LIVEKIT_URL", lossy.url)
    from shared import config

    config.get_settings.cache_clear()
    return lossy


def reconcile(sql, room: str) -> dict:
    """Run the real reconciler once, with this room's presence old enough to be asked about."""
    from functions.livekit_webhook import reconciler

    sql.execute("UPDATE public.voice_presence SET joined_at = joined_at - interval '10 minutes 1 second' "
                "WHERE room_name = %s AND left_at IS NULL", (room,))
    return reconciler.run()


# Given two members on a net, when deliveries are lost while one of them leaves, then the
# reconciler closes the session LiveKit no longer has and keeps the live one.
def test_reconciler_closes_what_livekit_no_longer_has(sql, on_lossy, deliveries, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    stays, leaves = sql.member("scout"), sql.member("voyager")
    t_stays, t_leaves = token_for(stays, net)["token"], token_for(leaves, net)["token"]

    async def scenario():
        async with joined(on_lossy.url, t_stays) as s:
            async with joined(on_lossy.url, t_leaves) as gone:
                eventually(lambda: open_sessions(sql, net, leaves.id) + open_sessions(sql, net, stays.id),
                           lambda rows: len(rows) == 2)
                deliveries.cut()
                gone_sid = gone.room.local_participant.sid
            await asyncio.sleep(1)  # the leave's webhook fails; LiveKit keeps retrying
            assert [r["sid"] for r in open_sessions(sql, net, leaves.id)] == [gone_sid]  # not told
            summary = await asyncio.to_thread(reconcile, sql, net)
            # read before deliveries return: LiveKit's retried leave would then replace the inference
            left = sessions(sql, net, leaves.id)
            still = open_sessions(sql, net, stays.id)
            return s.room.local_participant.sid, gone_sid, summary, left, still

    try:
        stays_sid, gone_sid, summary, left, still = lk_call(scenario())
    finally:
        deliveries.restore()
    assert summary["closed"] >= 1 and summary["unanswered"] == 0, summary
    assert [(r["sid"], r["left_reason"]) for r in left] == [(gone_sid, "absent_in_livekit")]
    assert [r["sid"] for r in still] == [stays_sid]
    # the live member's session was kept open by the reconciler, and closed by their own leave once
    # deliveries were restored
    assert stays_sid not in [r["sid"] for r in left]
    closed = eventually(lambda: sessions(sql, net, stays.id), lambda rows: rows[0]["left_at"] is not None)
    assert [(r["sid"], r["left_reason"]) for r in closed] == [(stays_sid, "participant_left")]


# Given members connected, when the server crashes and starts again (its rooms are gone), then the
# reconciler converges: what voice_presence holds open is what LiveKit lists.
def test_reconciler_converges_after_a_server_restart(sql, on_lossy, lk_call):
    from livekit.protocol import room as proto_room

    from tests.livekit_server.clients import room_service

    net = sql.net("vagrant", "vagrant", "scout")
    members = [sql.member("scout"), sql.member("voyager")]
    tokens = [token_for(m, net)["token"] for m in members]

    async def listed() -> set[str]:
        answer = await room_service(on_lossy.http_url, support.LIVEKIT_KEY, support.LIVEKIT_SECRET,
                                    "list_participants", room=net)
        return {p.sid for p in answer.participants}

    def open_sids() -> set[str]:
        return {r["sid"] for m in members for r in open_sessions(sql, net, m.id)}

    async def scenario():
        clients_ = [await connect(on_lossy.url, t) for t in tokens]
        try:
            eventually(open_sids, lambda sids: len(sids) == 2)
            before = open_sids()
            await asyncio.to_thread(on_lossy.kill)
            await asyncio.to_thread(on_lossy.start)
            await asyncio.sleep(2)  # clients may rejoin the new server; let that settle either way
            await asyncio.to_thread(reconcile, sql, net)
            return before, open_sids(), await listed()
        finally:
            for c in clients_:
                await c.leave()

    before, after, live = lk_call(scenario(), timeout=120)
    assert len(before) == 2 and before.isdisjoint(live)  # the crash took those sessions with it
    assert after <= live, (after, live)  # nothing stays open that LiveKit lacks


# Given a sim pod with its cadet and guide connected, when the pod is past its time and the expiry
# runs, then the real room is deleted, both clients are disconnected, and the pod is ended.
def test_sim_pod_expiry_deletes_the_room_and_disconnects_its_members(sql, livekit, lk_call):
    from functions.academy import expiry
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app

    from tests.livekit_server.clients import room_service

    skill = str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Pod {uuid.uuid4().hex[:8]}",)))
    cadet, guide = sql.member("scout"), sql.member("voyager")
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    request_id = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    pod = Client(accept_app).post({"requestId": request_id}, guide.auth()).json
    cadet_token = token_for(cadet, pod["roomName"])["token"]

    async def rooms_named() -> list[str]:
        answer = await room_service(livekit.http_url, support.LIVEKIT_KEY, support.LIVEKIT_SECRET, "list_rooms",
                                    names=[pod["roomName"]])
        return [r.name for r in answer.rooms]

    async def scenario():
        async with joined(livekit.url, cadet_token) as c, \
                joined(livekit.url, pod["connectionTokens"][0]["token"]) as g:
            assert await rooms_named() == [pod["roomName"]]
            sql.execute("UPDATE public.sim_pods SET expires_at = now() - interval '1 second', "
                        "created_at = now() - interval '1 hour' WHERE id = %s", (pod["simPodId"],))
            summary = await asyncio.to_thread(expiry.run)
            await asyncio.wait_for(asyncio.gather(c.disconnected.wait(), g.disconnected.wait()), 15)
            return summary, await rooms_named()

    summary, left = lk_call(scenario())
    assert summary["podsEnded"] >= 1, summary
    assert left == []
    assert sql.one("SELECT status FROM public.instruction_requests WHERE id = %s", (request_id,)) == "COMPLETED"
    assert eventually(lambda: open_sessions(sql, pod["roomName"], cadet.id), lambda rows: rows == []) == []
