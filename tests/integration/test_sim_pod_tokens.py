"""livekit-token for a sim pod's room: its cadet and guide only, only while it is live."""

from __future__ import annotations

import json
import time
import uuid

import jwt as pyjwt
import pytest
from livekit.api import TokenVerifier

from tests import support
from tests.support import Client


@pytest.fixture
def token_client(env):
    from functions.livekit_token.app import app

    return Client(app)


@pytest.fixture
def pod(env, sql):
    """A live sim pod opened through academy-request and academy-accept."""
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app

    skill = str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Pod {uuid.uuid4().hex[:8]}",)))
    cadet, guide = sql.member("vagrant"), sql.member("voyager")
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    rid = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    body = Client(accept_app).post({"requestId": rid}, guide.auth()).json
    return {"id": body["simPodId"], "room": body["roomName"], "cadet": cadet, "guide": guide}


def verify(token: str):
    return TokenVerifier(support.LIVEKIT_KEY, support.LIVEKIT_SECRET).verify(token)


# Given a live pod, when its cadet and its guide ask for its room, then each
# gets a token for that room that livekit-api accepts, ending no later than the pod.
def test_cadet_and_guide_get_tokens_for_the_pod_room(token_client, sql, pod):
    pod_expires = sql.one("SELECT extract(epoch FROM expires_at) FROM public.sim_pods WHERE id = %s", (pod["id"],))
    for member, rank in ((pod["cadet"], "vagrant"), (pod["guide"], "voyager")):
        reply = token_client.post({"roomName": pod["room"]}, member.auth())
        assert reply.status == 200, reply
        body = reply.json
        assert body["roomName"] == pod["room"] and body["simPodId"] == pod["id"] and body["bridges"] == []
        claims = verify(body["token"])
        assert claims.identity == member.id and claims.video.room == pod["room"] and claims.video.room_join
        assert claims.video.can_subscribe is True
        # the house rule holds in pods too: a vagrant listens, never publishes
        assert claims.video.can_publish is (rank != "vagrant")
        assert json.loads(claims.metadata) == {"userId": member.id, "rank": rank}
        assert pyjwt.decode(body["token"], options={"verify_signature": False})["exp"] <= float(pod_expires) + 1


@pytest.mark.parametrize("rank,roles", [("pioneer", []), ("scout", []), ("founder", ["Medic"])])
def test_anyone_else_is_403_whatever_their_rank(token_client, sql, pod, rank, roles):
    reply = token_client.post({"roomName": pod["room"]}, sql.member(rank, roles).auth())
    assert reply.status == 403 and reply.json["error"] == "FORBIDDEN", reply


def test_after_expiry_even_the_pair_is_403(token_client, sql, pod):
    sql.execute("UPDATE public.sim_pods SET created_at = now() - interval '3 hours', "
                "expires_at = now() - interval '1 second' WHERE id = %s", (pod["id"],))
    for member in (pod["cadet"], pod["guide"]):
        reply = token_client.post({"roomName": pod["room"]}, member.auth())
        assert reply.status == 403 and reply.json["error"] == "FORBIDDEN", reply


def test_after_the_pod_ended_the_pair_is_403(token_client, sql, pod):
    sql.execute("SELECT public.sim_pod_end(%s, 'ROOM_FINISHED')", (pod["id"],))
    reply = token_client.post({"roomName": pod["room"]}, pod["guide"].auth())
    assert reply.status == 403 and reply.json["error"] == "FORBIDDEN"


def test_a_brigged_cadet_is_refused(token_client, sql, pod):
    sql.execute("UPDATE public.profiles SET roles = '{brigged}' WHERE id = %s", (pod["cadet"].id,))
    assert token_client.post({"roomName": pod["room"]}, pod["cadet"].auth()).status == 403


def test_a_pod_token_lasts_at_most_until_the_pod_expires(token_client, sql, pod):
    sql.execute("UPDATE public.sim_pods SET expires_at = now() + interval '90 seconds' WHERE id = %s", (pod["id"],))
    token = token_client.post({"roomName": pod["room"]}, pod["cadet"].auth()).json["token"]
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - time.time() <= 91


def test_no_voice_net_can_take_a_pod_room_name(sql):
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        sql.net(code=f"sim-pod-{uuid.uuid4().hex}")


# --- a pod's tokens are short-lived and shape its room --------------------------

def _lifetime(token: str) -> int:
    claims = pyjwt.decode(token, options={"verify_signature": False})
    return claims["exp"] - claims["nbf"]


# Given a pod with two hours left, when its cadet asks for a token, then the
# token only lets them join for the next few minutes (the net TTL is an hour):
# once the pod ends, nothing minted earlier opens its room for long.
def test_a_pod_token_is_short_lived_even_with_hours_left(token_client, pod):
    from shared.livekit_tokens import SIM_POD_TOKEN_TTL_SECONDS

    reply = token_client.post({"roomName": pod["room"]}, pod["cadet"].auth())
    assert _lifetime(reply.json["token"]) == SIM_POD_TOKEN_TTL_SECONDS <= 300


def test_the_guides_accept_token_is_short_lived_too(env, sql):
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app

    skill = str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Pod {uuid.uuid4().hex[:8]}",)))
    cadet, guide = sql.member("scout"), sql.member("voyager")
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    rid = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    body = Client(accept_app).post({"requestId": rid}, guide.auth()).json
    assert _lifetime(body["connectionTokens"][0]["token"]) <= 300


# Given a pod, when either member gets a token, then the room LiveKit creates
# on their join stays open 5 minutes after everyone left (LiveKit's default is
# 20 s), so one dropped connection does not end a two-hour pod via room_finished.
def test_pod_tokens_ask_livekit_to_keep_the_empty_room_open(token_client, pod):
    reply = token_client.post({"roomName": pod["room"]}, pod["cadet"].auth())
    config = verify(reply.json["token"]).room_config
    assert config is not None and config.departure_timeout == 300 and config.empty_timeout == 300


def test_pod_tokens_publish_the_microphone_only_and_name_the_member(token_client, sql, pod):
    sql.execute("UPDATE public.profiles SET callsign = 'Cadet Kay' WHERE id = %s", (pod["cadet"].id,))
    sql.execute("UPDATE public.profiles SET rank = 'scout' WHERE id = %s", (pod["cadet"].id,))
    reply = token_client.post({"roomName": pod["room"], "participantName": "Guide"}, pod["cadet"].auth())
    claims = verify(reply.json["token"])
    assert claims.name == "Cadet Kay" and claims.video.can_publish_sources == ["microphone"]


# Given strict mode, when a guide accepts (academy-accept mints their token) and the voyager guide
# asks livekit-token for the pod, then neither token carries a publish or data right.
def test_strict_mode_pod_tokens_carry_no_publish_right(env, sql):
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app
    from functions.livekit_token.app import app as token_app
    from shared import config

    env.setenv("LIVEKIT_PUBLISH_AFTER_JOIN_CHECK", "true")
    config.get_settings.cache_clear()
    skill = str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"Pod {uuid.uuid4().hex[:8]}",)))
    cadet, guide = sql.member("scout"), sql.member("voyager")
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    rid = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    body = Client(accept_app).post({"requestId": rid}, guide.auth()).json
    again = Client(token_app).post({"roomName": body["roomName"]}, guide.auth()).json
    for token in (body["connectionTokens"][0]["token"], again["token"]):
        video = verify(token).video
        assert (video.room_join, video.can_subscribe, video.can_publish, video.can_publish_data) == \
            (True, True, False, False)
