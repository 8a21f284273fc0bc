"""livekit-token against real Postgres with the real migrations."""

from __future__ import annotations

import itertools

import pytest
from livekit.api import TokenVerifier

from shared.ranks import RANKS, level
from tests import support
from tests.support import Client


@pytest.fixture
def client(env):
    from functions.livekit_token.app import app

    return Client(app)


def verify_livekit(token: str):
    return TokenVerifier(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).verify(token)


# Given a net with every combination of thresholds, when each rank asks for a token,
# then the grants follow the ladder and livekit-api reads exactly those grants back.
THRESHOLDS = [("vagrant", "vagrant", "vagrant"), ("scout", "scout", "voyager"), ("vagrant", "scout", "founder"),
              ("voyager", "voyager", "voyager"), ("founder", "founder", "pioneer"), ("pioneer", "pioneer", "pioneer")]


@pytest.mark.parametrize("join,rx,tx", THRESHOLDS)
def test_rank_by_threshold_grant_matrix(client, sql, join, rx, tx):
    room = sql.net(join, rx, tx)
    for rank in RANKS:
        member = sql.member(rank)
        reply = client.post({"roomName": room, "participantName": "Ace"}, member.auth())
        if level(rank) < level(join):
            assert reply.status == 403, reply
            assert reply.json["error"] == "INSUFFICIENT_CLEARANCE"
            continue
        assert reply.status == 200, reply
        body = reply.json
        can_tx = level(rank) >= level(tx) and rank != "vagrant"
        expected = {"canJoin": True, "canSubscribe": level(rank) >= level(rx),
                    "canPublish": can_tx, "canPublishData": can_tx}
        assert body["grants"] == expected
        assert body["identity"] == member.id
        assert body["serverUrl"] == support.LIVEKIT_URL
        claims = verify_livekit(body["token"])
        assert claims.identity == member.id
        assert claims.video.room == room and claims.video.room_join is True
        assert claims.video.can_publish is expected["canPublish"]
        assert claims.video.can_publish_data is expected["canPublishData"]
        assert claims.video.can_subscribe is expected["canSubscribe"]
        import json
        assert json.loads(claims.metadata) == {"userId": member.id, "rank": rank}


def test_vagrant_never_publishes_even_on_an_open_net(client, sql):
    room = sql.net("vagrant", "vagrant", "vagrant")
    reply = client.post({"roomName": room}, sql.member("vagrant").auth())
    assert reply.status == 200
    assert reply.json["grants"]["canPublish"] is False
    assert reply.json["grants"]["canPublishData"] is False


def test_listen_only_token_writes_publish_false_explicitly(client, sql):
    import jwt as pyjwt

    room = sql.net("vagrant", "vagrant", "founder")
    reply = client.post({"roomName": room}, sql.member("scout").auth())
    video = pyjwt.decode(reply.json["token"], options={"verify_signature": False})["video"]
    # LiveKit treats an absent canPublish as true; it must be present and false.
    assert video["canPublish"] is False and video["canPublishData"] is False


def test_identity_and_role_in_body_change_nothing(client, sql):
    room = sql.net("vagrant", "vagrant", "founder")
    member = sql.member("scout")
    victim = sql.member("pioneer")
    reply = client.post({"roomName": room, "identity": victim.id, "role": "pioneer", "rank": "pioneer",
                         "userId": victim.id}, member.auth())
    assert reply.status == 200
    assert reply.json["identity"] == member.id
    assert reply.json["grants"]["canPublish"] is False
    assert verify_livekit(reply.json["token"]).identity == member.id


def test_rank_is_read_from_the_database_not_the_token(client, sql):
    room = sql.net("founder", "founder", "founder")
    member = sql.member("scout")
    # A token claiming a higher rank in its metadata still gets the database rank.
    reply = client.post({"roomName": room}, member.auth(user_metadata={"rank": "pioneer"}, app_metadata={"rank": "pioneer"}))
    assert reply.status == 403
    sql.execute("UPDATE public.profiles SET rank = 'founder' WHERE id = %s", (member.id,))
    assert client.post({"roomName": room}, member.auth()).status == 200


def test_unknown_room_is_404(client, sql):
    reply = client.post({"roomName": "no-such-net"}, sql.member("pioneer").auth())
    assert reply.status == 404
    assert reply.json["error"] == "NOT_FOUND"


def test_brigged_member_is_forbidden(client, sql):
    room = sql.net()
    reply = client.post({"roomName": room}, sql.member("pioneer", ["Medic", "brigged"]).auth())
    assert reply.status == 403
    assert reply.json["error"] == "FORBIDDEN"


def test_valid_user_without_profile_is_403(client, sql):
    import uuid

    reply = client.post({"roomName": sql.net()}, {"authorization": f"Bearer {support.sign_user_token(str(uuid.uuid4()))}",
                                                 "content-type": "application/json"})
    assert reply.status == 403
    assert reply.json["error"] == "FORBIDDEN"


def test_token_ttl_is_configurable(client, sql, env):
    env.setenv("LIVEKIT_TOKEN_TTL_SECONDS", "120")
    from shared import config
    config.get_settings.cache_clear()
    reply = client.post({"roomName": sql.net()}, sql.member("scout").auth())
    import jwt as pyjwt
    claims = pyjwt.decode(reply.json["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["nbf"] == 120


# By default a token lasts 10 minutes, as long as the ones LiveKit hands connected participants:
# a token kept past a brig or a demotion buys little.
def test_default_token_lifetime_is_ten_minutes(client, sql):
    import jwt as pyjwt

    reply = client.post({"roomName": sql.net()}, sql.member("scout").auth())
    claims = pyjwt.decode(reply.json["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["nbf"] == 600
    assert reply.json["publishAfterJoinCheck"] is False


# Given strict mode (LIVEKIT_PUBLISH_AFTER_JOIN_CHECK=true), when a scout who may talk asks for a
# token on a net and its bridged net, then no token carries a publish or data right; the answer's
# grants still say what the join check will grant, and publishAfterJoinCheck says to wait for it.
def test_strict_mode_tokens_carry_no_publish_right(client, sql, env):
    from shared import config

    env.setenv("LIVEKIT_PUBLISH_AFTER_JOIN_CHECK", "true")
    config.get_settings.cache_clear()
    a, b = sql.net(tx="scout"), sql.net(tx="scout")
    _bridge(sql, a, b)
    reply = client.post({"roomName": a}, sql.member("scout").auth())
    assert reply.status == 200, reply
    assert reply.json["publishAfterJoinCheck"] is True
    assert reply.json["grants"]["canPublish"] is True
    for token in [reply.json["token"], *(x["token"] for x in reply.json["bridges"])]:
        claims = verify_livekit(token)
        assert (claims.video.can_publish, claims.video.can_publish_data, claims.video.can_subscribe) == \
            (False, False, True)
        assert not claims.video.can_publish_sources


# --- bridged nets -----------------------------------------------------------

def _bridge(sql, a: str, b: str) -> None:
    sql.execute("INSERT INTO public.voice_net_bridges (source_net_id, target_net_id) "
                "SELECT x.id, y.id FROM public.voice_nets x, public.voice_nets y WHERE x.code = %s AND y.code = %s",
                (a, b))


# Given net A bridged to B (voyager+, talk founder+) and to C (pioneer only),
# when members of each rank ask for A, then each answer carries a token for
# exactly the bridged nets they may join, under that net's own thresholds.
@pytest.mark.parametrize("rank,expected", [
    ("scout", {}),
    ("voyager", {"b": {"canJoin": True, "canSubscribe": True, "canPublish": False, "canPublishData": False}}),
    ("founder", {"b": {"canJoin": True, "canSubscribe": True, "canPublish": True, "canPublishData": True}}),
    ("pioneer", {"b": {"canJoin": True, "canSubscribe": True, "canPublish": True, "canPublishData": True},
                 "c": {"canJoin": True, "canSubscribe": True, "canPublish": True, "canPublishData": True}}),
])
def test_answer_carries_a_token_per_joinable_bridged_net(client, sql, rank, expected):
    a = sql.net("vagrant", "vagrant", "scout")
    nets = {"b": sql.net("voyager", "voyager", "founder"), "c": sql.net("pioneer", "pioneer", "pioneer")}
    _bridge(sql, a, nets["b"])
    _bridge(sql, nets["c"], a)  # a bridge works whichever way round it was made
    member = sql.member(rank)

    reply = client.post({"roomName": a}, member.auth())
    assert reply.status == 200, reply
    bridges = {b["roomName"]: b for b in reply.json["bridges"]}
    assert set(bridges) == {nets[k] for k in expected}
    for key, grants in expected.items():
        item = bridges[nets[key]]
        assert set(item) == {"netId", "roomName", "token", "grants"}
        assert item["netId"] == str(sql.one("SELECT id FROM public.voice_nets WHERE code = %s", (nets[key],)))
        assert item["grants"] == grants
        claims = verify_livekit(item["token"])
        assert claims.identity == member.id and claims.video.room == nets[key]
        assert claims.video.can_publish is grants["canPublish"]
        assert claims.video.can_subscribe is grants["canSubscribe"]


def test_bridges_are_direct_only_and_follow_unlink(client, sql):
    a, b, c = sql.net(), sql.net(), sql.net()
    _bridge(sql, a, b)
    _bridge(sql, b, c)
    member = sql.member("pioneer")
    assert [x["roomName"] for x in client.post({"roomName": a}, member.auth()).json["bridges"]] == [b]
    assert sorted(x["roomName"] for x in client.post({"roomName": b}, member.auth()).json["bridges"]) == sorted([a, c])
    sql.execute("DELETE FROM public.voice_net_bridges WHERE source_net_id = (SELECT id FROM public.voice_nets "
                "WHERE code = %s)", (a,))
    assert client.post({"roomName": a}, member.auth()).json["bridges"] == []


def test_a_net_without_bridges_answers_an_empty_list(client, sql):
    reply = client.post({"roomName": sql.net()}, sql.member("scout").auth())
    assert reply.json["bridges"] == []


# --- what the token lets a member do and show -----------------------------------

# Given a member who may talk, when they get a token, then LiveKit may take
# only their microphone: no camera, no screen share.
def test_a_talking_member_may_publish_the_microphone_only(client, sql):
    from livekit.protocol.models import TrackSource

    reply = client.post({"roomName": sql.net("vagrant", "vagrant", "scout")}, sql.member("scout").auth())
    claims = verify_livekit(reply.json["token"])
    assert claims.video.can_publish is True
    assert claims.video.can_publish_sources == [TrackSource.Name(TrackSource.MICROPHONE).lower()] == ["microphone"]


def test_a_listener_gets_no_publish_sources(client, sql):
    reply = client.post({"roomName": sql.net("vagrant", "vagrant", "founder")}, sql.member("scout").auth())
    claims = verify_livekit(reply.json["token"])
    assert claims.video.can_publish is False and claims.video.can_publish_sources is None


# Given two members, when one sends the other's callsign as participantName,
# then the name LiveKit shows is still the sender's own callsign.
def test_participant_name_cannot_impersonate_another_member(client, sql):
    room = sql.net()
    commander = sql.member("founder", callsign=support.unique_callsign("Commander"))
    me = sql.member("scout", callsign=support.unique_callsign("Rookie"))
    reply = client.post({"roomName": room, "participantName": commander.callsign}, me.auth())
    assert reply.status == 200, reply
    assert verify_livekit(reply.json["token"]).name == me.callsign


def test_a_member_without_callsign_is_named_from_their_profile(client, sql):
    me = sql.member("voyager")
    reply = client.post({"roomName": sql.net(), "participantName": "Commander"}, me.auth())
    assert verify_livekit(reply.json["token"]).name == f"Voyager {me.id[:8]}"


# A sign-up's callsign with control or format characters is left out
# (shared/text.py); one written before that rule is cleaned on the way to LiveKit.
def test_control_characters_in_a_callsign_do_not_reach_livekit(client, sql):
    me = sql.member("scout", callsign="Ace\n\u202eeci\tAdmin")
    reply = client.post({"roomName": sql.net()}, me.auth())
    assert verify_livekit(reply.json["token"]).name == f"Scout {me.id[:8]}"


# A callsign from before the text rules is not shown at all (issue 24): cleaned,
# "Ace\x01" would show as "Ace", exactly like another member's "Ace".
def test_a_callsign_from_before_the_text_rules_is_not_shown_in_livekit():
    from shared.livekit_tokens import display_name

    assert display_name({"callsign": "Ace\n\u202eeci\tAdmin", "rank": "scout"}, "x" * 36) == "Scout xxxxxxxx"
    assert display_name({"callsign": "Ace\x01", "rank": "scout"}, "x" * 36) == "Scout xxxxxxxx"


# What LiveKit shows of a callsign: what draws as nothing removed, White_Space
# trimmed and collapsed; a grandfathered one (it clashes with an older member's)
# is not shown.
def test_livekit_shows_a_callsign_as_compared():
    from shared.livekit_tokens import display_name

    assert display_name({"callsign": " Bo\u3000 \u2800ss\u1680", "rank": "scout"}, "x" * 36) == "Bo ss"
    assert display_name({"callsign": "Boss ", "rank": "scout", "callsign_grandfathered": True},
                        "x" * 36) == "Scout xxxxxxxx"


def test_bridged_net_tokens_carry_the_same_name_and_sources(client, sql):
    a, b = sql.net(), sql.net()
    _bridge(sql, a, b)
    me = sql.member("scout", callsign=support.unique_callsign("Relay"))
    reply = client.post({"roomName": a, "participantName": "Someone"}, me.auth())
    [bridge] = reply.json["bridges"]
    claims = verify_livekit(bridge["token"])
    assert claims.name == me.callsign and claims.video.can_publish_sources == ["microphone"]
    assert claims.room_config is None  # nets keep LiveKit's default room lifecycle


# Given LIVEKIT_URL holding credentials (a proxy's user and password, which health already keeps
# out of its answers), when a member asks for a token, then the serverUrl they are given names
# the server without them: the credentials are not handed to every member.
@pytest.mark.parametrize("url,shown", [
    ("wss://nexus:s3cret@lk.example.test", "wss://lk.example.test"),
    ("wss://nexus:s3c@ret@lk.example.test:7880/", "wss://lk.example.test:7880"),  # the slash: config strips it
    ("wss://s3cret@[2001:db8::1]:443", "wss://[2001:db8::1]:443"),
])
def test_server_url_never_carries_the_credentials_in_livekit_url(client, sql, env, url, shown):
    from shared import config

    env.setenv("LIVEKIT_URL", url)
    config.get_settings.cache_clear()
    room = sql.net()
    reply = client.post({"roomName": room}, sql.member("scout").auth())
    assert reply.status == 200, reply
    assert reply.json["serverUrl"] == shown
    assert b"s3c" not in reply.raw
