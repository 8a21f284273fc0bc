"""shared.livekit_roomservice (livekit-api's real client) against the loopback Twirp RoomService."""

from __future__ import annotations

import pytest

from shared.livekit_rooms import LiveKitUnavailable, RoomNotFound
from shared.livekit_roomservice import RoomService
from tests import support
from tests.peers.livekit_twirp import LiveKitTwirpFake


@pytest.fixture
def lk():
    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET) as fake:
        yield fake


def client(lk, secret=support.LIVEKIT_SECRET, key=support.LIVEKIT_KEY, timeout=2.0):
    return RoomService(lk.url, key, secret, timeout=timeout)


def test_list_participants_returns_what_livekit_has(lk):
    # Given a room with two participants
    lk.add_participant("net-a", "user-1", sid="PA_1")
    lk.add_participant("net-a", "user-2", sid="PA_2")
    # When listed
    people = client(lk).list_participants("net-a")
    # Then both come back, and the call carried a roomAdmin grant for exactly that room
    assert sorted((p.sid, p.identity) for p in people) == [("PA_1", "user-1"), ("PA_2", "user-2")]
    call = lk.calls_to("ListParticipants")[0]
    assert call.grants.get("roomAdmin") is True and call.grants.get("room") == "net-a"
    assert call.content_type == "application/protobuf"


def test_unknown_room_lists_no_participants_as_livekit_answers(lk):
    # livekit-server answers ListParticipants for a room it does not know with
    # an empty list, not not_found: the fake does the same
    assert client(lk).list_participants("nowhere") == []
    assert [c.status for c in lk.calls_to("ListParticipants")] == [200]


def test_presence_by_room_decides_existence_with_one_list_rooms(lk):
    # Given one room with a participant, one empty room, and one LiveKit does not know
    lk.add_participant("net-a", "user-1", sid="PA_1")
    lk.add_room("net-empty")
    lk.add_room("net-unasked")
    # When asked about the three
    out = client(lk).presence_by_room(["net-a", "net-empty", "gone"])
    # Then the unknown room is RoomNotFound, the empty one an empty list
    assert [p.sid for p in out["net-a"]] == ["PA_1"]
    assert out["net-empty"] == []
    assert isinstance(out["gone"], RoomNotFound) and list(out) == ["net-a", "net-empty", "gone"]
    # And one ListRooms named the batch; participants were asked only for the rooms it listed
    [listed] = lk.calls_to("ListRooms")
    assert listed.status == 200 and listed.grants.get("roomList") is True
    assert sorted(c.room for c in lk.calls_to("ListParticipants")) == ["net-a", "net-empty"]


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_presence_by_room_with_livekit_down_is_unavailable_for_every_room(lk, mode):
    lk.add_room("net-a")
    lk.set_down(mode)
    out = client(lk).presence_by_room(["net-a", "gone"])
    assert all(isinstance(v, LiveKitUnavailable) for v in out.values()) and set(out) == {"net-a", "gone"}


def test_delete_room_is_idempotent(lk):
    lk.add_room("sim-pod-1")
    rooms = client(lk)
    assert rooms.delete_room("sim-pod-1") is True
    assert "sim-pod-1" not in lk.rooms
    # Deleting again: LiveKit answers not_found (as livekit-server does); already gone counts as done.
    assert rooms.delete_room("sim-pod-1") is False
    assert [c.status for c in lk.calls_to("DeleteRoom")] == [200, 404]
    assert lk.calls_to("DeleteRoom")[0].grants.get("roomCreate") is True


def test_list_rooms_needs_and_sends_room_list(lk):
    lk.add_room("net-a")
    lk.add_room("net-b")
    assert sorted(r.name for r in client(lk).list_rooms()) == ["net-a", "net-b"]
    assert [r.name for r in client(lk).list_rooms(["net-b"])] == ["net-b"]
    assert lk.calls_to("ListRooms")[0].grants.get("roomList") is True


def test_wrong_secret_is_unavailable_not_an_answer(lk):
    lk.add_room("net-a")
    with pytest.raises(LiveKitUnavailable) as e:
        client(lk, secret="not-the-secret-" + "x" * 32).list_participants("net-a")
    # livekit-server's auth middleware answers a bad signature in plain text, so livekit-api says "unknown"
    assert e.value.status == 401 and e.value.code == "unknown"


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_down_livekit_is_unavailable(lk, mode):
    lk.add_room("net-a")
    lk.set_down(mode)
    with pytest.raises(LiveKitUnavailable):
        client(lk).list_participants("net-a")
    lk.set_down(None)
    assert client(lk).list_participants("net-a") == []


def test_slow_livekit_times_out_as_unavailable(lk):
    lk.add_room("net-a")
    lk.delay = 1.0
    with pytest.raises(LiveKitUnavailable):
        client(lk, timeout=0.3).list_participants("net-a")


def test_participants_by_room_reports_per_room(lk):
    lk.add_participant("net-a", "user-1", sid="PA_1")
    lk.add_room("net-b")
    out = client(lk).participants_by_room(["net-a", "net-b", "gone"])
    assert [p.sid for p in out["net-a"]] == ["PA_1"]
    assert out["net-b"] == []
    assert out["gone"] == []  # ListParticipants cannot tell an unknown room from an empty one


def test_json_clients_are_served_too(lk):
    # curl users speak JSON Twirp; the fake answers them like LiveKit does.
    import httpx
    from livekit import api

    lk.add_participant("net-a", "user-1", sid="PA_1")
    token = api.AccessToken(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).with_grants(
        api.VideoGrants(room_admin=True, room="net-a")).to_jwt()
    r = httpx.post(f"{lk.url}/twirp/livekit.RoomService/ListParticipants", json={"room": "net-a"},
                   headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["participants"][0]["sid"] == "PA_1"
    r = httpx.post(f"{lk.url}/twirp/livekit.RoomService/ListParticipants", json={"room": "net-b"},
                   headers={"authorization": f"Bearer {token}"})
    # a token for another room: livekit-server answers 401 unauthenticated, not 403
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
