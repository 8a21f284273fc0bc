"""Push services that answer slowly or never finish answering: the flare
still answers within its budget, and every other device gets its push once,
reported at once, with no re-send after a lease runs out."""

from __future__ import annotations

import threading
import time

from tests.integration.notifications.conftest import delivery_rows, run_fanout, subscribe
from tests.peers.push_service import Reply

FLARE = {"location": "Hangar 9", "flareType": "COMBAT"}


def _in_thread(fn) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def _flare_rows(sql, flare_id: str) -> dict[str, tuple]:
    """Per recipient: (delivery status, attempts, last error, sent_at set)."""
    rows = sql.execute(
        "SELECT n.recipient_id::text, d.status, d.attempts, d.last_error, n.sent_at IS NOT NULL "
        "FROM public.notification_queue n JOIN nexus_private.push_deliveries d ON d.notification_id = n.id "
        "WHERE n.payload ->> 'flareId' = %s", (flare_id,))
    return {r[0]: r[1:] for r in rows}


def test_a_trickling_push_service_does_not_hold_the_flare_past_its_budget(
        push_env, push_service, subscribe_app, rescue_app, sql):
    # Given a medic whose push service trickles its answer a byte at a time,
    # and two rescuers whose push services answer normally
    push_env.setenv("PUSH_INLINE_BUDGET_SECONDS", "1.5")
    medic, rescuers = sql.member("scout", ["Medic"]), [sql.member("scout", ["Rescue"]) for _ in range(2)]
    slow = push_service.new_device()
    push_service.script(slow, Reply(201, trickle=0.1))
    subscribe(subscribe_app, medic, slow)
    honest = [push_service.new_device() for _ in rescuers]
    for member, device in zip(rescuers, honest):
        subscribe(subscribe_app, member, device)
    sender = sql.member("scout")

    # When a flare is launched
    thread, out = _in_thread(lambda: rescue_app.post(FLARE, headers=sender.auth()))
    thread.join(Reply.trickle_for - 5)  # a guard: the trickle goes on for trickle_for seconds

    # Then it is answered 202 while the trickle still goes on (cut at the budget, not waited out),
    # honest devices reached
    assert not thread.is_alive(), "the flare request is still waiting on the push service"
    [reply] = out
    assert reply.status == 202 and reply.json["devicesReached"] == 2, reply
    # And each honest device got it once, recorded as sent; the slow one is left to retry
    assert [len(push_service.payloads_for(d)) for d in honest] == [1, 1]
    rows = _flare_rows(sql, reply.json["flareId"])
    assert [rows[m.id][0] for m in rescuers] == ["sent", "sent"] and all(rows[m.id][3] for m in rescuers)
    assert rows[medic.id][:3] == ("pending", 1, "timeout") and not rows[medic.id][3]


def test_a_slow_push_service_does_not_delay_the_others_reports(push_env, push_service, subscribe_app, sql):
    # Given one device whose push service accepts only when released, and two quick ones, in one batch
    # (timeouts far beyond the test: only the test's release ends the slow answer)
    push_env.setenv("PUSH_CONNECT_TIMEOUT_SECONDS", "5")
    push_env.setenv("PUSH_READ_TIMEOUT_SECONDS", "50")
    push_env.setenv("PUSH_LEASE_SECONDS", "120")
    members = [sql.member("scout") for _ in range(3)]
    devices = [push_service.new_device() for _ in members]
    for m, d in zip(members, devices):
        subscribe(subscribe_app, m, d)
    answer = threading.Event()  # the slow service accepts only when the test says so
    push_service.script(devices[0], Reply(201, until=answer))
    ids = [sql.one("INSERT INTO public.notification_queue (recipient_id, type, title) VALUES (%s, 'SLOW_CHECK', 't') "
                   "RETURNING id::text", (m.id,)) for m in members]

    # When the fan-out runs
    thread, _ = _in_thread(run_fanout)

    # Then the quick devices' deliveries are recorded as sent while the slow one is still in flight
    def quick_sent() -> bool:
        return [r[0] for r in delivery_rows(sql, ids[1:])] == ["sent", "sent"]

    while not quick_sent() and thread.is_alive():
        time.sleep(0.05)
    assert quick_sent() and thread.is_alive()
    assert sql.one("SELECT count(*) FROM public.notification_queue WHERE id = ANY(%s::uuid[]) AND sent_at IS NOT NULL",
                   (ids[1:],)) == 2
    # And the slow one is sent too once it answers
    answer.set()
    thread.join(60)
    assert [r[0] for r in delivery_rows(sql, ids)] == ["sent"] * 3
    assert [len(push_service.payloads_for(d)) for d in devices] == [1, 1, 1]


def test_a_trickling_push_service_causes_no_duplicates_after_the_lease(push_env, push_service, subscribe_app, sql):
    # Given a 7 s lease, 0.5 s timeouts, and one batch holding a trickling
    # device and an honest one (the reviewer's reproduction)
    for k, v in {"PUSH_LEASE_SECONDS": "7", "PUSH_CONNECT_TIMEOUT_SECONDS": "0.5",
                 "PUSH_READ_TIMEOUT_SECONDS": "0.5", "PUSH_RETRY_BASE_SECONDS": "60"}.items():
        push_env.setenv(k, v)
    attacker, responder = sql.member("scout"), sql.member("scout")
    slow, honest = push_service.new_device(), push_service.new_device()
    push_service.script(slow, Reply(201, trickle=0.1))
    subscribe(subscribe_app, attacker, slow)
    subscribe(subscribe_app, responder, honest)
    ids = [sql.one("INSERT INTO public.notification_queue (recipient_id, type, title) VALUES (%s, 'LEASE_CHECK', 't') "
                   "RETURNING id::text", (m.id,)) for m in (attacker, responder)]

    # When one fan-out pass runs, and another starts after the first one's lease would have run out
    from functions.notifications import delivery

    first, first_out = _in_thread(run_fanout)
    first.join(60)  # guards against hanging only
    old, delivery._fanout = delivery._fanout, None  # the next run is another container
    old.close()
    second, _ = _in_thread(run_fanout)
    second.join(60)

    # Then the first pass ended well inside its lease, the honest device got the push exactly once,
    # recorded as sent, and the trickling one waits for its retry
    assert first_out and not second.is_alive()
    assert len(push_service.payloads_for(honest)) == 1
    rows = {r[4]: r[:4] for r in delivery_rows(sql, ids)}
    assert rows[honest.endpoint][:2] == ("sent", 1)
    assert rows[slow.endpoint][:2] == ("pending", 1) and rows[slow.endpoint][3] == "timeout"
    assert first_out[0]["stale"] == 0
