"""A join is checked too: participant_joined carries the permission the token
granted; one that differs from the member's current rights (a token minted before a
brig or a demotion, or for a sim pod that ended; a strict-mode token without the
publish right) is corrected or removed before the webhook answers. A member id
without a profile (a deleted member) may not join. LiveKit is the Twirp fake."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.integration.livekit_webhook import events as ev
from tests.integration.member_admin.conftest import rights_in
from tests.support import Client


@pytest.fixture
def hook(env, lk):
    from functions.livekit_webhook.app import app

    return Client(app)


def joined(lk, member, room: str, *, publish: bool, rank: str, sources=("MICROPHONE",),
           data: bool | None = None) -> dict:
    """The member is in LiveKit with a token's permission, and LiveKit sends participant_joined for it."""
    sid = f"PA_{uuid.uuid4().hex[:12]}"
    data = publish if data is None else data
    perm = {"can_subscribe": True, "can_publish": publish, "can_publish_data": data,
            "can_publish_sources": list(sources) if publish else []}
    lk.add_participant(room, member.id, sid=sid, permission=perm,
                       metadata=json.dumps({"userId": member.id, "rank": rank}))
    now = time.time()  # joined two hours ago: out of the runbook's "last hour" queries other tests run
    event = ev.participant_event("participant_joined", room, f"RM_{room}", member.id, sid, now, now - 7200,
                                 metadata={"userId": member.id, "rank": rank})
    # protojson as the server writes it: camelCase, enum names
    event["participant"]["permission"] = {"canSubscribe": True, "canPublish": publish, "canPublishData": data,
                                          "canPublishSources": list(sources) if publish else []}
    return event


def deliver(hook, event: dict):
    body, headers = ev.signed(event)
    return hook.post(raw=body, headers=headers)


# Given a scout brigged after their token was minted, when they rejoin with it,
# then the webhook removes them before it answers.
def test_a_join_with_a_token_from_before_the_brig_is_removed(hook, sql, lk):
    scout = sql.member("scout", ["brigged"])
    net = sql.net()
    reply = deliver(hook, joined(lk, scout, net, publish=True, rank="scout"))
    assert reply.status == 200, reply
    assert rights_in(lk, net, scout) is None
    assert [c.method for c in lk.calls] == ["ListParticipants", "RemoveParticipant"]


# Given a member demoted to vagrant after their token was minted, when they join publishing,
# then they stay, listening only, with their new rank in the metadata.
def test_a_join_with_a_token_from_before_a_demotion_is_corrected(hook, sql, lk):
    vagrant = sql.member("vagrant")
    net = sql.net(tx="scout")
    assert deliver(hook, joined(lk, vagrant, net, publish=True, rank="scout")).status == 200
    assert rights_in(lk, net, vagrant)["publish"] is False
    assert rights_in(lk, net, vagrant)["subscribe"] is True and rights_in(lk, net, vagrant)["rank"] == "vagrant"


# A token allowing every source (not ours: microphone only) is corrected too.
def test_a_join_allowing_more_than_the_microphone_is_corrected(hook, sql, lk):
    scout = sql.member("scout")
    net = sql.net()
    assert deliver(hook, joined(lk, scout, net, publish=True, rank="scout", sources=())).status == 200
    assert rights_in(lk, net, scout)["sources"] == ["MICROPHONE"]


# A join within current rights costs no call to LiveKit.
def test_a_join_within_current_rights_is_left_alone(hook, sql, lk):
    scout = sql.member("scout")
    net = sql.net()
    assert deliver(hook, joined(lk, scout, net, publish=True, rank="scout")).status == 200
    assert lk.calls == []


# Sim pods keep their rule: a join after the pod ended is removed the same way.
def test_a_join_to_a_sim_pod_that_ended_is_removed(hook, sql, lk):
    cadet, guide = sql.member("scout"), sql.member("voyager")
    skill = sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"S {uuid.uuid4().hex[:8]}",))
    request = sql.one("INSERT INTO public.instruction_requests (skill_id, cadet_id, guide_id, status, accepted_at) "
                      "VALUES (%s, %s, %s, 'ACCEPTED', now()) RETURNING id", (skill, cadet.id, guide.id))
    pod = f"sim-pod-{uuid.uuid4().hex}"
    sql.execute("INSERT INTO public.sim_pods (id, request_id, room_name, cadet_id, guide_id, created_at, expires_at, "
                "ended_at, end_reason) VALUES (%s, %s, %s, %s, %s, now() - interval '2 hours', "
                "now() - interval '1 minute', now() - interval '1 minute', 'EXPIRED')",
                (pod, request, pod, cadet.id, guide.id))

    assert deliver(hook, joined(lk, cadet, pod, publish=True, rank="scout")).status == 200
    assert rights_in(lk, pod, cadet) is None


def test_a_join_to_a_live_sim_pod_is_left_alone(hook, sql, lk):
    cadet, guide = sql.member("scout"), sql.member("voyager")
    skill = sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"S {uuid.uuid4().hex[:8]}",))
    request = sql.one("INSERT INTO public.instruction_requests (skill_id, cadet_id, guide_id, status, accepted_at) "
                      "VALUES (%s, %s, %s, 'ACCEPTED', now()) RETURNING id", (skill, cadet.id, guide.id))
    pod = f"sim-pod-{uuid.uuid4().hex}"
    sql.execute("INSERT INTO public.sim_pods (id, request_id, room_name, cadet_id, guide_id, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, now() + interval '1 hour')", (pod, request, pod, cadet.id, guide.id))
    assert deliver(hook, joined(lk, guide, pod, publish=True, rank="voyager")).status == 200
    assert lk.calls == [] and rights_in(lk, pod, guide) is not None


# With LiveKit down the webhook still answers 200 (the event is durable) and the correction waits queued.
def test_a_join_to_correct_while_livekit_is_down_is_queued(hook, sql, lk):
    scout = sql.member("scout", ["brigged"])
    net = sql.net()
    event = joined(lk, scout, net, publish=True, rank="scout")
    lk.set_down("503")
    assert deliver(hook, event).status == 200
    assert sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE user_id = %s AND room_name = %s "
                   "AND status = 'pending'", (scout.id, net)) == 1


# Given a member deleted after their token was minted (auth.users and so their profile gone), when
# they join with the token they kept, then the webhook removes them: an identity without a profile
# is judged as a member with no rights.
def test_a_join_by_a_deleted_member_is_removed(hook, sql, lk):
    scout = sql.member("scout")
    net = sql.net()
    sql.execute("DELETE FROM auth.users WHERE id = %s", (scout.id,))
    assert deliver(hook, joined(lk, scout, net, publish=True, rank="scout")).status == 200
    assert rights_in(lk, net, scout) is None


# Given strict mode's token (no publish right) for a scout who may talk, when they join, then the
# webhook grants them the microphone in place (the join check passed).
def test_a_strict_mode_join_is_granted_publishing(hook, sql, lk):
    scout = sql.member("scout")
    net = sql.net(tx="scout")
    assert deliver(hook, joined(lk, scout, net, publish=False, rank="scout")).status == 200
    assert rights_in(lk, net, scout) == {"sid": lk.participant(net, scout.id).sid, "subscribe": True,
                                         "publish": True, "data": True, "sources": ["MICROPHONE"], "rank": "scout"}


# Bots and egress (identities that are not member ids) are still never judged.
def test_a_join_by_an_identity_that_is_not_a_member_id_is_left_alone(hook, sql, lk):
    net = sql.net()
    lk.add_participant(net, "egress-recorder", sid="PA_egress")
    event = ev.participant_event("participant_joined", net, f"RM_{net}", "egress-recorder", "PA_egress",
                                 time.time(), time.time() - 7200)
    assert deliver(hook, event).status == 200
    assert lk.calls == []


# Given a brigged scout whose member job a worker holds (processing), when they rejoin with an old
# token, then the webhook still removes them at once: a join to judge never waits for the member's
# other job (the claim skips a busy member for every other kind of job).
def test_a_join_to_judge_is_applied_while_the_members_job_is_processing(hook, sql, lk):
    scout = sql.member("scout", ["brigged"])
    net = sql.net()
    sql.execute("DELETE FROM nexus_private.livekit_access_jobs WHERE user_id = %s", (scout.id,))
    sql.execute("INSERT INTO nexus_private.livekit_access_jobs (user_id, cause, status, locked_at, locked_by) "
                "VALUES (%s, 'profile', 'processing', now(), 'w-busy')", (scout.id,))
    assert deliver(hook, joined(lk, scout, net, publish=True, rank="scout")).status == 200
    assert rights_in(lk, net, scout) is None


# Given a vagrant on a net they may only listen to, when LiveKit sends their participant_joined as
# livekit-server writes it (protojson leaves out every false field: the permission is just
# {"canSubscribe": true}), then the join is within their rights: no job, no RoomService call.
def test_a_listeners_join_without_its_false_fields_is_left_alone(hook, sql, lk):
    vagrant = sql.member("vagrant")
    net = sql.net()
    event = joined(lk, vagrant, net, publish=False, rank="vagrant")
    event["participant"]["permission"] = {"canSubscribe": True}
    reply = deliver(hook, event)
    assert reply.status == 200, reply
    assert lk.calls == []
    assert sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE user_id = %s", (vagrant.id,)) == 0
