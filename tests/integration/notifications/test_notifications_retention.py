"""The scheduled fan-out forgets what is finished and older than
PUSH_RETENTION_DAYS, so the runbook's "pending" query (sent_at IS NULL)
does not list undeliverable notifications forever, and keeps everything
still in flight or recent."""

from __future__ import annotations

from tests.integration.notifications.conftest import run_fanout, subscribe


def _queue(sql, member, title: str) -> str:
    return sql.one("INSERT INTO public.notification_queue (recipient_id, type, title) VALUES (%s, 'RETENTION_CHECK', %s) "
                   "RETURNING id::text", (member.id, title))


def _age(sql, nid: str, days: int) -> None:
    sql.execute("UPDATE public.notification_queue SET created_at = now() - make_interval(days => %s) WHERE id = %s",
                (days, nid))
    sql.execute("UPDATE nexus_private.push_deliveries SET updated_at = now() - make_interval(days => %s), "
                "finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE now() - make_interval(days => %s) END "
                "WHERE notification_id = %s", (days, days, nid))


def _exists(sql, nid: str) -> bool:
    return sql.one("SELECT count(*) FROM public.notification_queue WHERE id = %s", (nid,)) == 1


def _deliveries(sql, nid: str) -> list[str]:
    return [r[0] for r in sql.execute("SELECT status FROM nexus_private.push_deliveries WHERE notification_id = %s",
                                      (nid,))]


def test_old_finished_notifications_and_deliveries_are_purged_and_the_rest_kept(
        push_env, push_service, subscribe_app, sql):
    # Given a 30-day retention and, for a member with a device and one without:
    push_env.setenv("PUSH_RETENTION_DAYS", "30")
    with_device, without = sql.member("scout"), sql.member("scout")
    device = push_service.new_device()
    subscribe(subscribe_app, with_device, device)
    old_sent = _queue(sql, with_device, "old, delivered")
    old_sent_read = _queue(sql, with_device, "old, delivered and read")
    old_no_device = _queue(sql, without, "old, nobody to send it to")
    recent_no_device = _queue(sql, without, "recent, nobody to send it to")
    run_fanout()  # delivers the two for the device
    old_open = _queue(sql, with_device, "old, still due")
    old_read_open = _queue(sql, with_device, "old, read, still due")
    push_service.script(device, 503, 503)  # both still due after this pass
    sql.execute("UPDATE public.notification_queue SET read_at = now() WHERE id = ANY(%s::uuid[])",
                ([old_sent_read, old_read_open],))
    for nid in (old_sent, old_sent_read, old_no_device, old_open, old_read_open):
        _age(sql, nid, 40)

    # When the scheduled fan-out runs
    summary = run_fanout()

    # Then old finished or read notifications are gone, with their deliveries
    assert summary["purged"]["notifications"] >= 4
    for nid in (old_sent, old_sent_read, old_no_device, old_read_open):
        assert not _exists(sql, nid) and _deliveries(sql, nid) == []
    # And a notification still being delivered is kept, as is a recent undeliverable one
    assert _exists(sql, old_open) and _deliveries(sql, old_open) == ["pending"]
    assert _exists(sql, recent_no_device)
    # And sent_at still means "a device accepted it": nothing was marked sent to empty the pending list
    assert sql.one("SELECT sent_at FROM public.notification_queue WHERE id = %s", (recent_no_device,)) is None


def test_old_finished_deliveries_of_a_kept_notification_are_purged(push_env, push_service, subscribe_app, sql):
    # Given a notification delivered to one device 40 days ago and still retrying on another
    push_env.setenv("PUSH_RETENTION_DAYS", "30")
    member = sql.member("scout")
    done_device, flaky_device = push_service.new_device(), push_service.new_device()
    subscribe(subscribe_app, member, done_device)
    subscribe(subscribe_app, member, flaky_device)
    push_service.script(flaky_device, 503, 503)
    nid = _queue(sql, member, "half delivered")
    run_fanout()
    _age(sql, nid, 40)
    assert sorted(_deliveries(sql, nid)) == ["pending", "sent"]

    # When the fan-out runs again (the flaky device fails again)
    run_fanout()

    # Then the finished delivery row is forgotten, the open one and the notification kept
    assert _exists(sql, nid) and _deliveries(sql, nid) == ["pending"]
