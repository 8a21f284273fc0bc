"""LiveKit follows every change, however it is made, through the schedule.

The schedule claims every due job in its database, so this module has a
database of its own (same cluster, real migrations). LiveKit is the Twirp
fake; the real-server versions of these cases are in tests/integration/livekit/.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from tests import support
from tests.integration.member_admin.conftest import connect, rights_in


@pytest.fixture(scope="module")
def own_database(pg):
    with support.migrated_database(pg, "nexus_access") as url:
        yield url


@pytest.fixture
def sql(own_database):
    d = support.Db(own_database)
    d.execute("DELETE FROM nexus_private.livekit_access_jobs")  # nothing left over from the previous test
    yield d
    d.close()


@pytest.fixture
def lk(env, own_database):
    from shared import config, db
    from tests.peers.livekit_twirp import LiveKitTwirpFake

    env.setenv("DATABASE_URL", own_database)
    with LiveKitTwirpFake(support.LIVEKIT_KEY, support.LIVEKIT_SECRET) as fake:
        env.setenv("LIVEKIT_URL", fake.url)
        config.get_settings.cache_clear()
        db.set_database(None)
        yield fake
    db.set_database(None)


def schedule() -> dict:
    from functions.member_admin.sync import handler

    return handler({"source": "aws.scheduler"}, None)


def pending(sql) -> list[tuple]:
    return sql.execute("SELECT user_id::text, room_name, last_error IS NOT NULL, next_run_at > now() "
                       "FROM nexus_private.livekit_access_jobs WHERE status = 'pending' ORDER BY id")


def arrive(sql) -> None:
    """Time passes: every job's backoff is over."""
    sql.execute("UPDATE nexus_private.livekit_access_jobs SET next_run_at = now() WHERE status = 'pending'")


# Given a scout publishing on a net, when someone brigs them with plain SQL in the dashboard,
# then the change is queued in that transaction and the schedule removes them from the room.
def test_plain_sql_change_reaches_livekit_through_the_schedule(sql, lk):
    scout = sql.member("scout")
    net = sql.net()
    connect(sql, lk, scout, net, publish=True)
    schedule()  # the job sql.member queued
    assert rights_in(lk, net, scout) is not None

    sql.execute("UPDATE public.profiles SET roles = ARRAY['brigged'] WHERE id = %s", (scout.id,))
    assert pending(sql) == [(scout.id, None, False, False)]

    assert schedule()["removed"] == 1
    assert rights_in(lk, net, scout) is None
    assert pending(sql) == []


# Given LiveKit stopped, a change waits (backing off, never given up) and is applied once LiveKit is back.
def test_with_livekit_stopped_the_change_waits_and_is_applied_when_it_is_back(sql, lk):
    vagrant = sql.member("vagrant")
    net = sql.net(tx="scout")
    connect(sql, lk, vagrant, net, publish=False)
    lk.set_down("refuse")

    sql.execute("UPDATE public.profiles SET rank = 'scout' WHERE id = %s", (vagrant.id,))
    first = schedule()
    assert first["failed"] == 1 and first["done"] == 0
    assert pending(sql) == [(vagrant.id, None, True, True)]       # backing off, with the error kept
    assert schedule()["claimed"] == 0                               # not due yet
    arrive(sql)
    assert schedule()["failed"] == 1                                # still down: waits again
    attempts = sql.one("SELECT attempt FROM nexus_private.livekit_access_jobs WHERE user_id = %s", (vagrant.id,))
    assert attempts == 2

    lk.set_down(None)
    arrive(sql)
    assert schedule()["updated"] == 1
    assert rights_in(lk, net, vagrant)["publish"] is True
    assert pending(sql) == []


# Backoff doubles from the base and is capped, so a long outage is retried at least every cap.
def test_backoff_doubles_and_is_capped(sql, lk):
    member = sql.member("scout")
    connect(sql, lk, member, sql.net(), publish=True)
    schedule()
    lk.set_down("503")
    sql.execute("UPDATE public.profiles SET rank = 'voyager' WHERE id = %s", (member.id,))
    waits = []
    for _ in range(6):
        arrive(sql)
        schedule()
        waits.append(round(sql.one("SELECT extract(epoch FROM next_run_at - updated_at) FROM "
                                   "nexus_private.livekit_access_jobs WHERE user_id = %s", (member.id,))))
    assert waits == [5, 10, 20, 40, 60, 60]


# Given a member whose job is processing, a second job for them is not handed out until the
# first is reported: one worker writes one member's rights at a time.
def test_a_member_whose_job_is_processing_is_not_claimed_again(sql, lk):
    from shared import db

    vagrant = sql.member("vagrant")
    net = sql.net(tx="scout")
    connect(sql, lk, vagrant, net, publish=False)
    schedule()

    def claim(worker: str) -> list:
        return db.call("livekit_access_jobs_claim", p_worker=worker, p_limit=10, p_lease_seconds=60,
                       p_job_ids=None)["jobs"]

    sql.execute("UPDATE public.profiles SET rank = 'scout' WHERE id = %s", (vagrant.id,))
    [promote] = claim("w-promote")    # a worker took the promotion's job and stalls
    sql.execute("UPDATE public.profiles SET rank = 'vagrant' WHERE id = %s", (vagrant.id,))
    assert claim("w-demote") == []    # the demotion's job waits for it

    db.call("livekit_access_jobs_report", p_worker="w-promote", p_done=[promote["id"]], p_failed=[])
    assert [j["userId"] for j in claim("w-demote")] == [vagrant.id]


# Given a room job that read a voyager's rights, when a demotion is applied inline before (or
# after) the room job writes what it read, then LiveKit ends at the demoted rights: the room
# job's report sees the rights moved and re-applies them.
@pytest.mark.parametrize("demotion", ["before the stale write", "after the stale write"])
def test_a_stale_room_job_and_a_demotion_end_demoted(sql, lk, demotion):
    from functions.member_admin.app import app
    from shared.livekit_access import AccessSync
    from tests.integration.member_admin.conftest import interposed_rooms
    from tests.support import Client

    founder, voyager = sql.member("founder"), sql.member("voyager")
    net = sql.net(tx="founder")
    connect(sql, lk, voyager, net, publish=False)
    schedule()
    sql.execute("UPDATE public.voice_nets SET min_rank_to_tx = 'scout' WHERE code = %s", (net,))  # a room job

    def demote():
        reply = Client(app).post({"userId": voyager.id, "rank": "vagrant", "reason": "test"}, founder.auth())
        assert reply.status == 200 and reply.json["livekit"]["applied"], reply

    step = {"before_write": demote} if demotion == "before the stale write" else {"after_write": demote}
    summary = AccessSync(interposed_rooms(lk.url, voyager.id, **step)).run(deadline=time.monotonic() + 60)  # generous

    assert summary.rechecks == 1
    assert rights_in(lk, net, voyager) == {"sid": lk.participant(net, voyager.id).sid, "subscribe": True,
                                           "publish": False, "data": False, "sources": [], "rank": "vagrant"}
    assert pending(sql) == []


# Applying a job twice changes nothing the second time.
def test_applying_twice_is_idempotent(sql, lk):
    scout = sql.member("scout")
    net = sql.net()
    connect(sql, lk, scout, net, publish=True)
    schedule()
    sql.execute("UPDATE public.profiles SET rank = 'vagrant' WHERE id = %s", (scout.id,))
    assert schedule()["updated"] == 1
    sql.execute("UPDATE public.profiles SET rank = 'voyager' WHERE id = %s", (scout.id,))
    sql.execute("UPDATE public.profiles SET rank = 'vagrant' WHERE id = %s", (scout.id,))
    again = schedule()
    assert (again["updated"], again["unchanged"]) == (0, 1)


# Raising a net's min_rank_to_join above a connected member removes them; those still allowed stay.
def test_raising_min_rank_to_join_removes_who_may_no_longer_join(sql, lk):
    scout, voyager = sql.member("scout"), sql.member("voyager")
    net = sql.net(join="scout")
    connect(sql, lk, scout, net, publish=True)
    connect(sql, lk, voyager, net, publish=True)
    lk.add_participant(net, "egress-bot")  # not a member: never touched
    schedule()

    sql.execute("UPDATE public.voice_nets SET min_rank_to_join = 'voyager' WHERE code = %s", (net,))
    assert pending(sql) == [(None, net, False, False)]
    summary = schedule()

    assert (summary["removed"], summary["unchanged"]) == (1, 1)
    assert rights_in(lk, net, scout) is None and rights_in(lk, net, voyager) is not None
    assert lk.participant(net, "egress-bot") is not None


# Lowering min_rank_to_tx lets a connected scout speak at once.
def test_lowering_min_rank_to_tx_lets_members_publish(sql, lk):
    scout = sql.member("scout")
    net = sql.net(tx="voyager")
    connect(sql, lk, scout, net, publish=False)
    schedule()
    sql.execute("UPDATE public.voice_nets SET min_rank_to_tx = 'scout' WHERE code = %s", (net,))
    schedule()
    assert rights_in(lk, net, scout)["publish"] is True


# `nexus admin` changes go through the same SQL and reach LiveKit the same way.
def test_nexus_admin_member_is_audited_and_reaches_livekit(sql, lk, own_database, monkeypatch, capsys):
    from nexus.cli import main

    scout = sql.member("scout")
    email = sql.one("SELECT email FROM auth.users WHERE id = %s", (scout.id,))
    net = sql.net()
    connect(sql, lk, scout, net, publish=True)
    schedule()
    monkeypatch.setenv("DATABASE_URL", own_database)

    assert main(["admin", "member", email.upper(), "--add-role", "BRIG", "--reason", "spam", "--as", "ops-anna"]) == 0
    assert sql.execute("SELECT actor, actor_id, actor_label, after, reason FROM public.admin_audit "
                       "WHERE member_id = %s", (scout.id,)) == [
        ("operator", None, "ops-anna", {"rank": "scout", "roles": ["brigged"]}, "spam")]
    schedule()
    assert rights_in(lk, net, scout) is None

    # an operator is not ranked: the first founder of a project comes from here
    assert main(["admin", "member", scout.id, "--rank", "founder", "--remove-role", "brigged",
                 "--reason", "first founder", "--as", "ops-anna"]) == 0
    assert sql.one("SELECT rank FROM public.profiles WHERE id = %s", (scout.id,)) == "founder"
    assert main(["admin", "member", str(uuid.uuid4()), "--rank", "scout", "--reason", "x"]) == 1
    capsys.readouterr()


def test_nexus_admin_refuses_labels_and_reasons_the_audit_cannot_hold(sql, own_database, monkeypatch, capsys):
    # Given an operator, when the --as label or the reason is longer than the audit keeps (120 / 500)
    # or empty, then the command says so as a usage error (exit 2) and nothing is changed or audited
    from nexus.cli import main

    monkeypatch.setenv("DATABASE_URL", own_database)
    scout = sql.member("scout")
    before = sql.one("SELECT count(*) FROM public.admin_audit")
    for extra in (["--reason", "x" * 501], ["--reason", ""], ["--reason", "ok", "--as", "a" * 121]):
        with pytest.raises(SystemExit) as exit_:
            main(["admin", "member", scout.id, "--rank", "voyager", *extra])
        assert exit_.value.code == 2
        assert "characters" in capsys.readouterr().err
    assert sql.one("SELECT rank FROM public.profiles WHERE id = %s", (scout.id,)) == "scout"
    assert sql.one("SELECT count(*) FROM public.admin_audit") == before


def test_nexus_admin_nets_skills_and_certifications(sql, lk, own_database, monkeypatch, capsys):
    from nexus.cli import main

    monkeypatch.setenv("DATABASE_URL", own_database)
    code = f"ops-{uuid.uuid4().hex[:8]}"
    guide = sql.member("voyager")
    skill = f"Skill {uuid.uuid4().hex[:6]}"

    assert main(["admin", "net", "create", code, "--label", "Ops", "--join", "scout", "--tx", "voyager"]) == 0
    assert main(["admin", "net", "create", code]) == 1                          # exists
    assert main(["admin", "net", "set", code, "--rx", "scout"]) == 0
    assert sql.execute("SELECT label, min_rank_to_join, min_rank_to_rx, min_rank_to_tx FROM public.voice_nets "
                       "WHERE code = %s", (code,)) == [("Ops", "scout", "scout", "voyager")]
    assert main(["admin", "net", "set", f"missing-{code}", "--rx", "scout"]) == 1
    assert main(["admin", "skill", "add", skill]) == 0
    assert main(["admin", "certify", guide.id, skill]) == 0
    assert main(["admin", "certify", guide.id, "No such skill"]) == 1
    assert sql.one("SELECT count(*) FROM public.certifications c JOIN public.skills s ON s.id = c.skill_id "
                   "WHERE c.user_id = %s AND s.name = %s", (guide.id, skill)) == 1
    actions = sql.execute("SELECT action FROM public.admin_audit WHERE subject IN (%s, %s) ORDER BY id", (code, skill))
    assert [a for (a,) in actions] == ["net.create", "net.set", "skill.add", "certify"]
    assert pending(sql)[-1:] == [(None, code, False, False)]   # the net's change queued its room
    capsys.readouterr()


# Given two workers each holding a job for one member (the schedule's and member-admin's inline pass)
# and both dying before they report, when their leases run out, then the next run still claims:
# one job comes back for the member and LiveKit reaches their current rights (both coming back
# at once broke the one-pending-job-per-target index, and every later claim failed with it).
def test_two_dead_workers_on_one_member_do_not_wedge_the_queue(sql, lk):
    from shared import db

    vagrant = sql.member("vagrant")
    net = sql.net(tx="scout")
    connect(sql, lk, vagrant, net, publish=False)
    schedule()

    sql.execute("UPDATE public.profiles SET rank = 'scout' WHERE id = %s", (vagrant.id,))
    [first] = db.call("livekit_access_jobs_claim", p_worker="w-dies-1", p_limit=10, p_lease_seconds=60,
                      p_job_ids=None)["jobs"]
    sql.execute("UPDATE public.profiles SET rank = 'voyager' WHERE id = %s", (vagrant.id,))
    # two claims that raced (each saw the other's job still pending) both hold one of the member's jobs
    second = sql.one("UPDATE nexus_private.livekit_access_jobs SET status = 'processing', locked_at = now(), "
                     "locked_by = 'w-dies-2' WHERE status = 'pending' AND user_id = %s RETURNING id", (vagrant.id,))
    assert first["id"] != second
    sql.execute("UPDATE nexus_private.livekit_access_jobs SET locked_at = now() - interval '5 minutes' "
                "WHERE status = 'processing'")   # both workers died: their leases ran out

    summary = schedule()
    assert (summary["claimed"], summary["done"], summary["updated"]) == (1, 1, 1)
    assert rights_in(lk, net, vagrant)["publish"] is True and rights_in(lk, net, vagrant)["rank"] == "voyager"
    assert sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs") == 0


# Given a busy room (LiveKit's participant list runs past a megabyte: many listeners, some with
# long metadata), when a member in it is brigged, then the schedule still removes them (the list was
# cut at 1 MiB, failed to parse, and the job backed off for ever as if LiveKit were down).
def test_a_brig_reaches_a_member_in_a_busy_room(sql, lk):
    scout = sql.member("scout")
    net = sql.net()
    connect(sql, lk, scout, net, publish=True)
    for n in range(300):
        lk.add_participant(net, f"listener-{n}", metadata="m" * 4000)
    schedule()

    sql.execute("UPDATE public.profiles SET roles = ARRAY['brigged'] WHERE id = %s", (scout.id,))
    summary = schedule()
    assert (summary["failed"], summary["removed"]) == (0, 1)
    assert rights_in(lk, net, scout) is None


# Given a scout LiveKit lists in a room but voice_presence never recorded (the participant_joined
# was lost, or not committed yet), when they are brigged, then the schedule still finds and removes
# them: a member's job asks LiveKit which rooms it has, not only voice_presence.
def test_a_brig_finds_a_session_voice_presence_never_recorded(sql, lk):
    from tests.integration.member_admin.conftest import permission

    scout = sql.member("scout")
    net = sql.net()
    lk.add_participant(net, scout.id, permission=permission(publish=True))
    schedule()

    sql.execute("UPDATE public.profiles SET roles = ARRAY['brigged'] WHERE id = %s", (scout.id,))
    assert schedule()["removed"] == 1
    assert rights_in(lk, net, scout) is None


def _blocked_on_a_lock(sql, function: str) -> bool:
    return bool(sql.one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                        (f"%{function}%",)))


def _interleaved(sql, own_database, member_id: str, call):
    """Run `call` in a thread while another transaction holds an uncommitted enqueue for the
    member; commit that enqueue once `call` waits on it. Returns call's answer (or raises its error)."""
    import psycopg

    out: dict = {}
    with psycopg.connect(own_database) as other:
        other.execute("SELECT nexus_private.livekit_access_enqueue(%s, NULL, 'profile')", (member_id,))
        worker = threading.Thread(target=lambda: out.update(answer=_catch(call)))
        worker.start()
        deadline = time.monotonic() + 30
        while not _blocked_on_a_lock(sql, "livekit_access_jobs_") and worker.is_alive():
            assert time.monotonic() < deadline, "the call never waited on the enqueue"
            time.sleep(0.02)
        other.commit()
        worker.join(30)
    answer = out["answer"]
    if isinstance(answer, BaseException):
        raise answer
    return answer


def _catch(call):
    try:
        return call()
    except BaseException as e:  # handed to the test's thread
        return e


# Given a job whose worker died (its lease ran out), when an enqueue for the same member commits
# while the claim is bringing the job back (between its two statements), then the claim still
# answers, and one job for the member is left: the one-pending index holds.
def test_lease_recovery_with_an_enqueue_committing_meanwhile(sql, lk, own_database):
    from shared import db

    member = sql.member("scout")
    sql.execute("DELETE FROM nexus_private.livekit_access_jobs")
    sql.execute("SELECT nexus_private.livekit_access_enqueue(%s, NULL, 'profile')", (member.id,))
    sql.execute("UPDATE nexus_private.livekit_access_jobs SET status = 'processing', locked_by = 'w-dead', "
                "locked_at = now() - interval '5 minutes'")

    answer = _interleaved(sql, own_database, member.id, lambda: db.call(
        "livekit_access_jobs_claim", p_worker="w-next", p_limit=10, p_lease_seconds=60, p_job_ids=None))

    assert [j["userId"] for j in answer["jobs"]] == [member.id]
    assert sql.one("SELECT count(*) FROM nexus_private.livekit_access_jobs WHERE user_id = %s", (member.id,)) == 1


# The same for a failed job handed back by its report while an enqueue commits.
def test_failed_report_with_an_enqueue_committing_meanwhile(sql, lk, own_database):
    from shared import db

    member = sql.member("scout")
    sql.execute("DELETE FROM nexus_private.livekit_access_jobs")
    job = sql.one("SELECT nexus_private.livekit_access_enqueue(%s, NULL, 'profile')", (member.id,))
    sql.execute("UPDATE nexus_private.livekit_access_jobs SET status = 'processing', locked_by = 'w-1', "
                "locked_at = now()")

    answer = _interleaved(sql, own_database, member.id, lambda: db.call(
        "livekit_access_jobs_report", p_worker="w-1", p_done=[], p_failed=[job], p_error="LiveKit down"))

    assert answer["failed"] == 0  # folded into the pending job that committed meanwhile
    assert sql.execute("SELECT status FROM nexus_private.livekit_access_jobs WHERE user_id = %s",
                       (member.id,)) == [("pending",)]


# Given a scout who may talk on a net, and beside them in LiveKit participants of another app that
# shares the LiveKit project, whose identities spell the scout's id another way (no hyphens, braces,
# urn:uuid:), when the scout's job runs, then only the scout's own session is given the scout's
# rights: the others are not our members (the webhook's join check, nexus_private.lk_uuid, does not
# take them for one either) and keep what they had.
def test_identities_spelling_a_member_id_another_way_are_not_given_their_rights(sql, lk):
    scout = sql.member("scout")
    net = sql.net()
    mine = connect(sql, lk, scout, net, publish=False)
    bare = uuid.UUID(scout.id)
    others = [bare.hex, "{" + scout.id + "}", bare.urn]
    for identity in others:
        lk.add_participant(net, identity, permission={"can_subscribe": True}, metadata="")

    schedule()

    assert rights_in(lk, net, scout) == {"sid": mine.sid, "subscribe": True, "publish": True, "data": True,
                                         "sources": ["MICROPHONE"], "rank": "scout"}
    for identity in others:
        assert lk.participant(net, identity).permission == {"can_subscribe": True}, identity
