"""Deleting a member with plain SQL, on whichever auth.users the test database has (the auth
server's, or the shim's where its binary is missing): a guide with an open pod, and the auth
server's soft delete (deleted_at set). The admin API's deletions: tests/auth_server."""

from __future__ import annotations

import uuid

import pytest

from tests.support import Client


@pytest.fixture
def pod(env, sql):
    from functions.academy.accept import app as accept
    from functions.academy.request import app as request

    cadet, guide = sql.member("vagrant"), sql.member("voyager")
    skill = sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id::text", (f"Skill {uuid.uuid4().hex[:8]}",))
    sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide.id, skill))
    asked = Client(request).post({"skillId": skill}, cadet.auth())
    assert asked.status == 201, asked
    accepted = Client(accept).post({"requestId": asked.json["requestId"]}, guide.auth())
    assert accepted.status == 200, accepted
    return cadet, guide, accepted.json["simPodId"]


def _pod(sql, pod_id: str) -> tuple:
    return sql.execute("SELECT cadet_id::text, guide_id::text, end_reason, room_delete_due_at <= now() "
                       "FROM public.sim_pods WHERE id = %s", (pod_id,))[0]


def test_deleting_a_guide_with_an_open_pod_ends_it(sql, pod):
    cadet, guide, pod_id = pod
    sql.execute("DELETE FROM auth.users WHERE id = %s", (guide.id,))
    assert _pod(sql, pod_id) == (cadet.id, None, "MEMBER_DELETED", True)
    assert sql.execute("SELECT status, guide_id FROM public.instruction_requests WHERE sim_pod_id = %s",
                       (pod_id,)) == [("COMPLETED", None)]


def test_a_soft_deleted_cadet_loses_their_profile_and_their_pod_ends(sql, pod):
    cadet, guide, pod_id = pod
    sql.execute("UPDATE auth.users SET deleted_at = now() WHERE id = %s", (cadet.id,))
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (cadet.id,)) == 0
    assert _pod(sql, pod_id) == (None, guide.id, "MEMBER_DELETED", True)


# Given an auth.users row that arrives already deleted (an import or a restore copying
# deleted_at), no profile is made for it.
def test_a_user_inserted_already_soft_deleted_gets_no_profile(sql):
    uid = str(uuid.uuid4())
    sql.execute("INSERT INTO auth.users (id, email, deleted_at) VALUES (%s, %s, now())", (uid, f"{uid}@example.test"))
    assert sql.one("SELECT count(*) FROM public.profiles WHERE id = %s", (uid,)) == 0
