"""The server's own webhooks, delivered to the real livekit-webhook, drive voice_presence and livekit_rooms.

The session's livekit-server posts to the functions gateway (fixtures.py); nothing here signs an
event itself. Rows are polled for a bounded time: deliveries are asynchronous.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests import support
from tests.livekit_server import clients
from tests.livekit_server.clients import joined
from tests.livekit_server.test_grants_enforced import rooms, token_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def eventually(read, check, timeout: float = 30.0):
    """`read()` until `check(value)`; the last value either way (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not check(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def sessions(sql, room: str, identity: str) -> list[dict]:
    rows = sql.execute(
        "SELECT participant_sid, user_id::text, participant_name, participant_metadata, joined_at, left_at, "
        "left_reason, disconnect_reason FROM public.voice_presence WHERE room_name = %s AND participant_identity = %s "
        "ORDER BY joined_at", (room, identity))
    keys = ("sid", "user_id", "name", "metadata", "joined_at", "left_at", "left_reason", "disconnect_reason")
    return [dict(zip(keys, r)) for r in rows]


def open_sessions(sql, room: str, identity: str) -> list[dict]:
    return [s for s in sessions(sql, room, identity) if s["left_at"] is None]


# Given a member with a callsign, when their client joins a net and leaves it, then the server's
# participant_joined opens their voice_presence row (user id, callsign, rank metadata) and its
# participant_left closes it.
def test_join_and_leave_open_and_close_the_row(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    scout = sql.member("scout", callsign="Kestrel")
    token = token_for(scout, net)["token"]

    async def scenario():
        async with joined(livekit.url, token) as p:
            opened = eventually(lambda: open_sessions(sql, net, scout.id), lambda rows: len(rows) == 1)
            return p.room.local_participant.sid, opened

    sid, opened = lk_call(scenario())
    assert len(opened) == 1, opened
    row = opened[0]
    assert (row["sid"], row["user_id"], row["name"]) == (sid, scout.id, "Kestrel")
    assert row["metadata"] == {"userId": scout.id, "rank": "scout"}
    closed = eventually(lambda: sessions(sql, net, scout.id), lambda rows: rows and rows[0]["left_at"] is not None)
    assert [(r["sid"], r["left_reason"]) for r in closed] == [(sid, "participant_left")]
    assert closed[0]["left_at"] >= closed[0]["joined_at"]


# Given a member connected to a net, when the same identity connects again (a second tab), then
# the server replaces the first session and exactly one session stays open: the second.
def test_same_identity_twice_ends_with_one_open_session(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    scout = sql.member("scout")
    first_token, second_token = token_for(scout, net)["token"], token_for(scout, net)["token"]

    async def scenario():
        async with joined(livekit.url, first_token) as first:
            eventually(lambda: open_sessions(sql, net, scout.id), lambda rows: len(rows) == 1)
            async with joined(livekit.url, second_token) as second:
                settled = eventually(lambda: sessions(sql, net, scout.id),
                                     lambda rows: len(rows) == 2 and sum(r["left_at"] is None for r in rows) == 1)
                return first.room.local_participant.sid, second.room.local_participant.sid, settled

    first_sid, second_sid, settled = lk_call(scenario())
    assert [r["sid"] for r in settled if r["left_at"] is None] == [second_sid]
    assert [r["sid"] for r in settled if r["left_at"] is not None] == [first_sid]


# Given a client in its own process, when it is killed with SIGKILL (no goodbye), then after
# LiveKit's own timeout the server reports it gone and its row is closed.
def test_a_killed_client_is_closed_after_livekits_timeout(sql, livekit):
    net = sql.net("vagrant", "vagrant", "scout")
    scout = sql.member("scout")
    token = token_for(scout, net)["token"]
    proc = subprocess.Popen([sys.executable, "-m", "tests.livekit_server.clients", livekit.url, token], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "connected"
        opened = eventually(lambda: open_sessions(sql, net, scout.id), lambda rows: len(rows) == 1)
        assert len(opened) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    closed = eventually(lambda: sessions(sql, net, scout.id), lambda rows: rows[0]["left_at"] is not None,
                        timeout=120)
    assert closed[0]["left_at"] is not None, closed
    assert closed[0]["left_reason"] in ("participant_left", "connection_aborted"), closed


# Given a room with a member in it, when the room is deleted through RoomService, then the
# server's room_finished reaches us: livekit_rooms says the room finished and nothing of it is open.
def test_room_finished_closes_presence_and_livekit_rooms_follows(sql, livekit, lk_call):
    net = sql.net("vagrant", "vagrant", "scout")
    scout = sql.member("scout")
    token = token_for(scout, net)["token"]

    def room_row():
        return sql.execute("SELECT room_sid, started_at, finished_at, finished_reason FROM public.livekit_rooms "
                           "WHERE room_name = %s", (net,))

    async def scenario():
        async with joined(livekit.url, token) as p:
            eventually(lambda: open_sessions(sql, net, scout.id), lambda rows: len(rows) == 1)
            started = eventually(room_row, lambda rows: bool(rows))
            await rooms(livekit, "delete_room", room=net)
            await clients.asyncio.wait_for(p.disconnected.wait(), 15)
            return p.room.sid if hasattr(p.room, "sid") else None, started

    _, started = lk_call(scenario())
    assert started and started[0][2] is None, started
    finished = eventually(room_row, lambda rows: rows and rows[0][2] is not None)
    assert finished[0][0] == started[0][0] and finished[0][3] == "room_finished", finished
    assert eventually(lambda: open_sessions(sql, net, scout.id), lambda rows: rows == []) == []
