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
