"""End to end: members subscribe through notifications-subscribe, a scout
launches a flare through handle-rescue-request, and the loopback push service
(which verifies VAPID and decrypts with each device's own keys) shows what
every browser would have received."""

from __future__ import annotations

import time
import uuid

from tests.integration.notifications.conftest import delivery_rows, run_fanout, subscribe
from tests.support import unique_callsign


def _responder_ids(sql, sender_id: str) -> set[str]:
    # The definition the flare function uses, stated independently.
    rows = sql.execute(
        "SELECT id::text FROM public.profiles WHERE id <> %s "
        "AND EXISTS (SELECT 1 FROM unnest(roles) r WHERE lower(r) IN ('rescue', 'medic')) "
        "AND NOT EXISTS (SELECT 1 FROM unnest(roles) r WHERE lower(r) = 'brigged')", (sender_id,))
    return {r[0] for r in rows}


def test_flare_reaches_every_responder_device_decrypted_and_nowhere_else(
        push_env, push_service, subscribe_app, rescue_app, sql):
    # Given responders with devices (a medic with two), and members who must not hear it
    medic, rescuer = sql.member("voyager", ["Medic"]), sql.member("scout", ["Rescue"])
    brigged_medic, bystander = sql.member("scout", ["Medic", "brigged"]), sql.member("founder")
    sender = sql.member("scout", ["Medic"], callsign=unique_callsign("Nomad-7"))
    devices = {
        "medic-phone": (medic, push_service.new_device()),
        "medic-laptop": (medic, push_service.new_device()),
        "rescuer": (rescuer, push_service.new_device()),
        "brigged": (brigged_medic, push_service.new_device()),
        "bystander": (bystander, push_service.new_device()),
        "sender": (sender, push_service.new_device()),
    }
    for i, (member, device) in enumerate(devices.values()):
        subscribe(subscribe_app, member, device, browser_shape=i % 2 == 0)

    # When the scout launches a medical flare
    reply = rescue_app.post({"location": "Stanton III - Crusader", "flareType": "MEDICAL"}, headers=sender.auth())

    # Then it is accepted, and every responder in the org was queued
    assert reply.status == 202, reply
    body = reply.json
    assert body["status"] == "FLARE_LAUNCHED"
    assert body["respondersQueued"] == len(_responder_ids(sql, sender.id))
    assert body["devicesReached"] == 3
    flare_id = body["flareId"]
    assert sql.one("SELECT count(*) FROM public.flares WHERE id = %s AND sender_id = %s AND status = 'ACTIVE'",
                   (flare_id, sender.id)) == 1

    # And the decrypted flare arrived once on each responder device, before the handler answered
    for name in ("medic-phone", "medic-laptop", "rescuer"):
        payloads = push_service.payloads_for(devices[name][1])
        assert len(payloads) == 1, name
        p = payloads[0]
        assert p["type"] == "RESCUE_FLARE"
        assert p["data"] == {"flareId": flare_id, "flareType": "MEDICAL", "location": "Stanton III - Crusader",
                             "senderId": sender.id, "senderCallsign": sender.callsign}
        assert sender.callsign in p["body"] and "Stanton III - Crusader" in p["body"]
    # And nowhere else
    for name in ("brigged", "bystander", "sender"):
        assert push_service.payloads_for(devices[name][1]) == [], name
    assert push_service.rejected == []

    # And each push carried a valid VAPID JWT for this service, high urgency and a per-notification Topic
    for r in push_service.received:
        assert r.claims["aud"] == push_service.url
        assert r.claims["sub"] == "mailto:ops@nomadnexus.test"
        assert 0 < r.claims["exp"] - time.time() <= 24 * 3600
        assert r.headers["urgency"] == "high"
        assert r.headers["ttl"] == "3600"
        assert r.headers["topic"] == r.payload["id"].replace("-", "")

    # And the runbook's monitoring view shows the notifications as sent
    rows = sql.execute("SELECT recipient_id::text, sent_at IS NOT NULL FROM public.notification_queue "
                       "WHERE payload ->> 'flareId' = %s", (flare_id,))
    sent = {rid for rid, is_sent in rows if is_sent}
    assert {medic.id, rescuer.id} <= sent
    assert brigged_medic.id not in {r[0] for r in rows} and sender.id not in {r[0] for r in rows}
    assert sql.one("SELECT count(*) FROM public.push_subscriptions WHERE user_id = %s AND last_success_at IS NOT NULL",
                   (medic.id,)) == 2

    # And the scheduled pass afterwards sends nothing twice
    run_fanout()
    assert sum(push_service.received_by().values()) == 3


def test_flare_left_to_the_schedule_is_delivered_by_the_next_pass(
        push_env, push_service, subscribe_app, rescue_app, sql):
    # Given inline delivery switched off and a rescuer with a device
    push_env.setenv("PUSH_INLINE_BUDGET_SECONDS", "0")
    rescuer, sender = sql.member("scout", ["Rescue"]), sql.member("scout")
    device = push_service.new_device()
    subscribe(subscribe_app, rescuer, device)

    # When a combat flare is launched
    reply = rescue_app.post({"location": "Pyro I", "flareType": "COMBAT"}, headers=sender.auth())
    assert reply.status == 202 and reply.json["devicesReached"] == 0
    assert push_service.payloads_for(device) == []

    # Then the scheduled fan-out delivers it
    summary = run_fanout()
    assert summary["outcomes"].get("sent", 0) >= 1
    [payload] = push_service.payloads_for(device)
    assert payload["data"]["flareType"] == "COMBAT" and payload["data"]["flareId"] == reply.json["flareId"]


def test_a_row_queued_by_another_producer_is_delivered_without_any_other_call(push_env, push_service, subscribe_app, sql):
    # Given a cadet with a device, and a producer (the academy) that only INSERTs
    cadet = sql.member("vagrant")
    device = push_service.new_device()
    subscribe(subscribe_app, cadet, device)
    nid = sql.one(
        "INSERT INTO public.notification_queue (recipient_id, type, title, message, payload) "
        "VALUES (%s, 'ACADEMY_ACCEPTED', 'Your sim pod is ready', 'Guide Vega accepted', '{\"simPodId\": \"p1\"}') "
        "RETURNING id::text", (cadet.id,))
    assert sql.one("SELECT count(*) FROM public.notification_queue WHERE type = 'ACADEMY_ACCEPTED' "
                   "AND sent_at IS NULL AND id = %s", (nid,)) == 1

    # When the scheduled fan-out runs
    run_fanout()

    # Then the device has it, at normal urgency, and the runbook's query no longer lists it as pending
    [payload] = push_service.payloads_for(device)
    assert payload["type"] == "ACADEMY_ACCEPTED" and payload["data"] == {"simPodId": "p1"}
    assert push_service.received[-1].headers["urgency"] == "normal"
    assert sql.one("SELECT sent_at IS NOT NULL FROM public.notification_queue WHERE id = %s", (nid,))
    assert [r[0] for r in delivery_rows(sql, [nid])] == ["sent"]


def test_runbook_monitoring_queries_run_as_written(push_env, push_service, subscribe_app, sql):
    # Given one delivered and one undeliverable (no device) notification
    with_device, without = sql.member("scout"), sql.member("scout")
    subscribe(subscribe_app, with_device, push_service.new_device())
    for m in (with_device, without):
        sql.execute("INSERT INTO public.notification_queue (recipient_id, type, title) VALUES (%s, 'RUNBOOK_CHECK', 't')",
                    (m.id,))
    run_fanout()

    # When the runbook's 7.3 queries run, verbatim
    pending = sql.execute("""
SELECT 
  type, 
  COUNT(*) as count,
  MAX(created_at) as latest
FROM notification_queue 
WHERE sent_at IS NULL 
GROUP BY type;""")
    recent = sql.execute("""
SELECT * FROM notification_queue 
WHERE sent_at IS NOT NULL 
ORDER BY sent_at DESC 
LIMIT 10;""")

    # Then they show the pending one by type and the delivered one first among recent deliveries
    assert ("RUNBOOK_CHECK", 1) in [(t, c) for t, c, _ in pending]
    assert recent[0][1] == uuid.UUID(with_device.id) and recent[0][2] == "RUNBOOK_CHECK"
