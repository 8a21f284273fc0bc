"""The fan-out against push services that fail: expired subscriptions,
throttling, server errors, timeouts, hard refusals, a worker that dies after
claiming, and two workers racing for the same deliveries."""

from __future__ import annotations

import threading
import time

import pytest

from shared import db
from tests.integration.notifications.conftest import delivery_rows, run_fanout, subscribe
from tests.peers.push_service import Reply


def _queue(sql, member, kind: str = "TEST_PING", title: str = "Ping") -> str:
    return sql.one("INSERT INTO public.notification_queue (recipient_id, type, title, message) "
                   "VALUES (%s, %s, %s, 'hello') RETURNING id::text", (member.id, kind, title))


def _subscribed(sql, push_service, subscribe_app, rank: str = "scout", devices: int = 1):
    member = sql.member(rank)
    ds = [push_service.new_device() for _ in range(devices)]
    for d in ds:
        subscribe(subscribe_app, member, d)
    return member, ds


@pytest.mark.parametrize("status", [404, 410])
def test_expired_subscription_is_deleted_and_other_devices_still_receive(
        status, push_env, push_service, subscribe_app, sql):
    # Given a member with two devices, one of which the browser dropped
    member, (dropped, live) = _subscribed(sql, push_service, subscribe_app, devices=2)
    push_service.script(dropped, status)
    nid = _queue(sql, member)

    # When the fan-out runs
    run_fanout()

    # Then the dropped device's subscription is gone and the other device got the message
    assert sql.one("SELECT count(*) FROM public.push_subscriptions WHERE endpoint = %s", (dropped.endpoint,)) == 0
    assert len(push_service.payloads_for(live)) == 1
    assert sorted(r[0] for r in delivery_rows(sql, [nid])) == ["gone", "sent"]

    # And a later notification is queued for the live device only
    nid2 = _queue(sql, member)
    assert [r[4] for r in delivery_rows(sql, [nid2])] == [live.endpoint]


def test_gone_device_open_deliveries_are_cancelled_not_sent(push_env, push_service, subscribe_app, sql):
    # Given two notifications queued for one device, and the device expires on the first send
    push_env.setenv("PUSH_FANOUT_BATCH", "1")
    member, (device,) = _subscribed(sql, push_service, subscribe_app)
    first, second = _queue(sql, member), _queue(sql, member)
    push_service.script(device, 410)

    # When the fan-out runs
    run_fanout()

    # Then the second is cancelled rather than sent to a dead endpoint
    statuses = {r[0] for r in delivery_rows(sql, [first, second])}
    assert statuses == {"gone", "cancelled"}
    assert push_service.requests == 1


def test_429_retry_after_is_honoured(push_env, push_service, subscribe_app, sql):
    # Given a push service that throttles the first attempt for 2 minutes
    member, (device,) = _subscribed(sql, push_service, subscribe_app)
    push_service.script(device, Reply(429, {"Retry-After": "120"}))
    nid = _queue(sql, member)

    # When the fan-out runs
    run_fanout()

    # Then the delivery waits for at least Retry-After (counted from the report, on the database's clock)
    status, attempts, last_status, _, _ = delivery_rows(sql, [nid])[0]
    assert (status, attempts, last_status) == ("pending", 1, 429)
    assert sql.one("SELECT extract(epoch FROM next_attempt_at - updated_at) FROM nexus_private.push_deliveries "
                   "WHERE notification_id = %s", (nid,)) >= 120
    # ... and a pass before then does not touch the push service
    run_fanout()
    assert push_service.requests == 1

    # When the wait is over (moved, not waited out), the next pass delivers it once
    sql.execute("UPDATE nexus_private.push_deliveries SET next_attempt_at = now() WHERE notification_id = %s", (nid,))
    run_fanout()
    assert len(push_service.payloads_for(device)) == 1
    assert delivery_rows(sql, [nid])[0][:2] == ("sent", 2)


def test_500_then_201_delivers_exactly_once(push_env, push_service, subscribe_app, sql):
    member, (device,) = _subscribed(sql, push_service, subscribe_app)
    push_service.script(device, 500)
    nid = _queue(sql, member)

    run_fanout()
    assert delivery_rows(sql, [nid])[0][:3] == ("pending", 1, 500)
    assert sql.one("SELECT failure_count FROM public.push_subscriptions WHERE endpoint = %s", (device.endpoint,)) == 1
    assert sql.one("SELECT sent_at FROM public.notification_queue WHERE id = %s", (nid,)) is None

    run_fanout()
    assert len(push_service.payloads_for(device)) == 1
    assert delivery_rows(sql, [nid])[0][:2] == ("sent", 2)
    assert sql.one("SELECT failure_count FROM public.push_subscriptions WHERE endpoint = %s", (device.endpoint,)) == 0
    assert sql.one("SELECT sent_at IS NOT NULL FROM public.notification_queue WHERE id = %s", (nid,))


def test_timeout_is_retried(push_env, push_service, subscribe_app, sql):
    # Given a push service that hangs past our 1 s read timeout once
    member, (device,) = _subscribed(sql, push_service, subscribe_app)
    push_service.script(device, Reply(503, delay=1.5))
    nid = _queue(sql, member)

    run_fanout()
    status, attempts, _, last_error, _ = delivery_rows(sql, [nid])[0]
    assert (status, attempts, last_error) == ("pending", 1, "timeout")

    run_fanout()
    assert len(push_service.payloads_for(device)) == 1


def test_other_4xx_fails_with_its_reason_and_is_not_retried(push_env, push_service, subscribe_app, sql):
    member, (device,) = _subscribed(sql, push_service, subscribe_app)
    push_service.script(device, 400)
    nid = _queue(sql, member)

    run_fanout()
    run_fanout()

    status, attempts, last_status, last_error, _ = delivery_rows(sql, [nid])[0]
    assert (status, attempts, last_status) == ("failed", 1, 400)
    assert last_error.startswith("400")
    assert push_service.requests == 1


def test_max_attempts_makes_a_delivery_dead(push_env, push_service, subscribe_app, sql):
    push_env.setenv("PUSH_MAX_ATTEMPTS", "2")
    member, (device,) = _subscribed(sql, push_service, subscribe_app)
    push_service.script(device, 502, 503, 201)
    nid = _queue(sql, member)

    for _ in range(3):
        run_fanout()

    assert delivery_rows(sql, [nid])[0][:3] == ("dead", 2, 503)
    assert push_service.requests == 2
    assert push_service.payloads_for(device) == []


def test_a_worker_killed_between_claim_and_send_loses_nothing(push_env, push_service, subscribe_app, sql):
    # Given a worker that claimed the delivery (a 60 s lease) and died before sending
    member, (device,) = _subscribed(sql, push_service, subscribe_app)
    nid = _queue(sql, member)
    claim = db.call("push_claim_deliveries", p_limit=10, p_lease_seconds=60, p_max_attempts=8)
    assert [d["notification"]["id"] for d in claim["deliveries"]] == [nid]

    # When another pass runs while the lease holds, it leaves the delivery alone
    run_fanout()
    assert push_service.requests == 0

    # Then once the lease has expired (moved to now, not waited out) the next pass delivers it, exactly once
    sql.execute("UPDATE nexus_private.push_deliveries SET next_attempt_at = now() WHERE notification_id = %s", (nid,))
    run_fanout()
    assert len(push_service.payloads_for(device)) == 1
    assert delivery_rows(sql, [nid])[0][:2] == ("sent", 2)

    # And the dead worker's late report changes nothing
    late = db.call("push_report_deliveries", p_claim_token=claim["claimToken"], p_max_attempts=8,
                   p_results=[{"deliveryId": claim["deliveries"][0]["deliveryId"], "outcome": "failed",
                               "status": 400, "error": "late"}])
    assert late["stale"] == 1
    assert delivery_rows(sql, [nid])[0][0] == "sent"


def test_two_workers_at_once_never_send_one_delivery_twice(push_env, vapid_keys, subscribe_app, sql):
    from functions.notifications.delivery import Fanout
    from shared.config import get_settings
    from tests.peers.push_service import PushService

    # Given 40 members with 2 devices each, 3 notifications each (240 deliveries),
    # and a push service slow enough that the workers overlap
    push_env.setenv("PUSH_FANOUT_BATCH", "8")
    # Generous timeouts: a timeout is retried, and a retry is not what this test is about.
    push_env.setenv("PUSH_CONNECT_TIMEOUT_SECONDS", "5")
    push_env.setenv("PUSH_READ_TIMEOUT_SECONDS", "5")
    with PushService(application_server_key=vapid_keys.public, latency=0.01, lifetime=60) as service:
        members = [_subscribed(sql, service, subscribe_app, devices=2)[0] for _ in range(40)]
        ids = [_queue(sql, m, title=f"n{i}") for m in members for i in range(3)]

        # When two workers drain the queue at the same time
        settings = get_settings()
        workers = [Fanout(settings), Fanout(settings)]
        summaries = [None, None]
        gate = threading.Barrier(2)

        def work(i: int) -> None:
            gate.wait()
            summaries[i] = workers[i].drain(deadline=time.monotonic() + 30)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for w in workers:
            w.close()

        # Then every delivery was sent exactly once, and both workers took part
        per_device_topics: dict[str, list[str]] = {}
        for r in service.received:
            per_device_topics.setdefault(r.device_id, []).append(r.headers["topic"])
        assert len(service.received) == 240 == service.requests
        assert all(len(t) == len(set(t)) == 3 for t in per_device_topics.values())
        assert summaries[0].claimed + summaries[1].claimed == 240
        assert summaries[0].claimed > 0 and summaries[1].claimed > 0
        assert {r[0] for r in delivery_rows(sql, ids)} == {"sent"}


def test_production_refuses_to_connect_to_a_private_address_whatever_the_row_says(
        push_env, push_service, sql):
    # Given a subscription row pointing at loopback (as if DNS had changed under it)
    push_env.setenv("NEXUS_ENV", "production")
    member = sql.member("scout")
    device = push_service.new_device()
    sql.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) VALUES (%s, %s, %s, %s)",
                (member.id, device.endpoint, device.p256dh, device.auth))
    nid = _queue(sql, member)

    # When the production fan-out runs
    run_fanout()

    # Then nothing reached the address, and the delivery failed with the reason
    assert push_service.requests == 0
    status, _, _, last_error, _ = delivery_rows(sql, [nid])[0]
    assert status == "failed" and "non-public" in last_error
