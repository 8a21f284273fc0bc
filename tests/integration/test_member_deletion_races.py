"""Deleting a member while their own requests are in flight: the deletion holds its locks
(an open transaction on another connection) while the function runs, then commits. The
function must answer as for a member who is gone (an error envelope, never 500) and write
nothing for them."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from tests.support import Client


def _skill(sql) -> str:
    return sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id::text", (f"Skill {uuid.uuid4().hex[:8]}",))


def _while_deleting(sql, member_id: str, call):
    """Run `call` in a thread while another connection has deleted `member_id` but not committed;
    commit once the call is waiting on the deletion's locks (or done), and return its answer."""
    deleting = psycopg.connect(sql.url)
    try:
        deleting.execute("DELETE FROM auth.users WHERE id = %s", (member_id,))
        out: dict = {}
        t = threading.Thread(target=lambda: out.setdefault("reply", call()))
        t.start()
        # Commit once the call waits on a lock the deletion holds (or has finished).
        for _ in range(600):
            waiting = sql.one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                              "AND datname = current_database()")
            if waiting or not t.is_alive():
                break
            t.join(0.05)
        deleting.commit()
        t.join(60)
        assert not t.is_alive()
        return out["reply"]
    finally:
        deleting.close()


def _pending_request(sql):
    """A cadet's pending request and a guide certified for its skill."""
    from functions.academy.request import app as request

    cadet, guide = sql.member("vagrant"), sql.member("voyager")
    skill = _skill(sql)
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    asked = Client(request).post({"skillId": skill}, cadet.auth())
    assert asked.status == 201, asked
    return cadet, guide, asked.json["requestId"]


def _accept(guide, request_id: str):
    from functions.academy.accept import app as accept

    return Client(accept).post({"requestId": request_id}, guide.auth())


def test_a_guide_deleted_while_accepting_gets_no_pod_and_no_500(env, sql):
    cadet, guide, request_id = _pending_request(sql)
    reply = _while_deleting(sql, guide.id, lambda: _accept(guide, request_id))
    assert reply.status in (403, 404), reply
    assert sql.execute("SELECT status, guide_id FROM public.instruction_requests WHERE id = %s",
                       (request_id,)) == [("PENDING", None)]
    assert sql.one("SELECT count(*) FROM public.sim_pods WHERE request_id = %s", (request_id,)) == 0


def test_a_cadet_deleted_while_their_request_is_accepted_gets_no_500(env, sql):
    cadet, guide, request_id = _pending_request(sql)
    reply = _while_deleting(sql, cadet.id, lambda: _accept(guide, request_id))
    assert reply.status == 404, reply
    assert sql.one("SELECT count(*) FROM public.sim_pods WHERE request_id = %s", (request_id,)) == 0


def _open_pod(sql):
    cadet, guide, request_id = _pending_request(sql)
    accepted = _accept(guide, request_id)
    assert accepted.status == 200, accepted
    return cadet, guide, request_id, accepted.json["simPodId"]


def test_both_members_of_a_pod_deleted_at_once(env, sql):
    cadet, guide, request_id, pod_id = _open_pod(sql)

    def delete_guide():
        with psycopg.connect(sql.url, autocommit=True) as c:
            c.execute("DELETE FROM auth.users WHERE id = %s", (guide.id,))
        return "deleted"

    assert _while_deleting(sql, cadet.id, delete_guide) == "deleted"
    assert sql.execute("SELECT count(*) FROM public.profiles WHERE id IN (%s, %s)", (cadet.id, guide.id)) == [(0,)]
    assert sql.execute("SELECT cadet_id, guide_id, end_reason, ended_at IS NOT NULL FROM public.sim_pods WHERE id = %s",
                       (pod_id,)) == [(None, None, "MEMBER_DELETED", True)]
    assert sql.execute("SELECT status, cadet_id, guide_id FROM public.instruction_requests WHERE id = %s",
                       (request_id,)) == [("COMPLETED", None, None)]


def test_a_member_deleted_while_a_founder_changes_their_rank(env, sql):
    from functions.member_admin.app import app as member_admin

    founder, target = sql.member("founder"), sql.member("vagrant")
    audit_before = sql.one("SELECT count(*) FROM public.admin_audit")
    reply = _while_deleting(sql, target.id, lambda: Client(member_admin).post(
        {"userId": target.id, "rank": "scout", "reason": "promotion"}, founder.auth()))
    assert reply.status == 404, reply
    assert sql.one("SELECT count(*) FROM public.admin_audit") == audit_before


def test_a_founder_deleted_while_changing_a_members_rank(env, sql):
    from functions.member_admin.app import app as member_admin

    founder, target = sql.member("founder"), sql.member("vagrant")
    reply = _while_deleting(sql, founder.id, lambda: Client(member_admin).post(
        {"userId": target.id, "rank": "scout", "reason": "promotion"}, founder.auth()))
    assert reply.status == 403, reply
    assert sql.one("SELECT rank FROM public.profiles WHERE id = %s", (target.id,)) == "vagrant"
