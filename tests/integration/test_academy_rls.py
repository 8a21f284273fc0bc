"""Row-level security on the academy and bridge tables, as the frontend's roles see them."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.support import Client


def as_role(sql, role: str, user_id: str | None, query: str, params=None) -> list[tuple]:
    """Run one query the way PostgREST does for a request: role and JWT claims set per transaction."""
    with psycopg.connect(sql.url) as conn:
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {role}")
            claims = json.dumps({"sub": user_id, "role": role} if user_id else {"role": role})
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
            return conn.execute(query, params).fetchall()


@pytest.fixture
def session(env, sql):
    """A skill with two certified guides, a cadet with a pending request and another with an accepted one."""
    from functions.academy.accept import app as accept_app
    from functions.academy.request import app as request_app

    skill = str(sql.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id", (f"RLS {uuid.uuid4().hex[:8]}",)))
    guide, other_guide, cadet, cadet2, stranger = (sql.member("voyager"), sql.member("voyager"),
                                                   sql.member("scout"), sql.member("scout"), sql.member("pioneer"))
    for g in (guide, other_guide):
        sql.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (g.id, skill))
    pending = Client(request_app).post({"skillId": skill}, cadet.auth()).json["requestId"]
    accepted = Client(request_app).post({"skillId": skill}, cadet2.auth()).json["requestId"]
    pod = Client(accept_app).post({"requestId": accepted}, guide.auth()).json["simPodId"]
    return dict(skill=skill, guide=guide, other_guide=other_guide, cadet=cadet, cadet2=cadet2, stranger=stranger,
                pending=pending, accepted=accepted, pod=pod)


def visible_requests(sql, member, skill) -> set[str]:
    rows = as_role(sql, "authenticated", member.id,
                   "SELECT id::text FROM public.instruction_requests WHERE skill_id = %s", (skill,))
    return {r[0] for r in rows}


def visible_pods(sql, member, pod) -> int:
    return len(as_role(sql, "authenticated", member.id, "SELECT 1 FROM public.sim_pods WHERE id = %s", (pod,)))


def test_cadets_read_only_their_own_requests_and_pods(sql, session):
    s = session
    assert visible_requests(sql, s["cadet"], s["skill"]) == {s["pending"]}
    assert visible_requests(sql, s["cadet2"], s["skill"]) == {s["accepted"]}
    assert visible_pods(sql, s["cadet2"], s["pod"]) == 1
    assert visible_pods(sql, s["cadet"], s["pod"]) == 0


def test_certified_guides_read_pending_requests_for_their_skills(sql, session):
    s = session
    # the pod's guide sees their accepted request and the pending one; another guide only the pending one
    assert visible_requests(sql, s["guide"], s["skill"]) == {s["pending"], s["accepted"]}
    assert visible_requests(sql, s["other_guide"], s["skill"]) == {s["pending"]}
    assert visible_pods(sql, s["guide"], s["pod"]) == 1
    assert visible_pods(sql, s["other_guide"], s["pod"]) == 0


def test_uncertified_members_and_anon_read_nothing(sql, session):
    s = session
    assert visible_requests(sql, s["stranger"], s["skill"]) == set()
    assert visible_pods(sql, s["stranger"], s["pod"]) == 0
    for table in ("instruction_requests", "sim_pods", "skills", "certifications", "voice_net_bridges"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(sql, "anon", None, f"SELECT 1 FROM public.{table} LIMIT 1")


@pytest.mark.parametrize("statement", [
    "INSERT INTO public.instruction_requests (skill_id, cadet_id) VALUES (%(skill)s, %(me)s)",
    "UPDATE public.instruction_requests SET status = 'CANCELLED' WHERE cadet_id = %(me)s",
    "INSERT INTO public.certifications (user_id, skill_id) VALUES (%(me)s, %(skill)s)",
    "UPDATE public.sim_pods SET expires_at = expires_at + interval '1 day'",
    "INSERT INTO public.skills (name) VALUES ('mine')",
    "DELETE FROM public.voice_net_bridges",
])
def test_members_write_nothing_directly(sql, session, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role(sql, "authenticated", session["cadet"].id, statement, {"skill": session["skill"], "me": session["cadet"].id})


def test_members_read_skills_certifications_and_bridges(sql, session):
    s = session
    assert as_role(sql, "authenticated", s["stranger"].id,
                   "SELECT count(*) FROM public.certifications WHERE skill_id = %s", (s["skill"],)) == [(2,)]
    assert as_role(sql, "authenticated", s["stranger"].id,
                   "SELECT count(*) FROM public.skills WHERE id = %s", (s["skill"],)) == [(1,)]
    as_role(sql, "authenticated", s["stranger"].id, "SELECT count(*) FROM public.voice_net_bridges")


def test_the_academy_functions_are_not_callable_by_the_api_roles(sql):
    for role in ("anon", "authenticated"):
        for call in ("public.academy_accept(NULL::uuid, NULL::uuid, 1, 1)",
                     "public.academy_request_create(NULL::uuid, NULL::uuid, 1)",
                     "public.net_bridge(NULL::uuid, NULL::uuid, NULL::uuid, 'link')",
                     "public.academy_expiry_sweep(1, 1)", "public.sim_pod_end('x', 'EXPIRED')",
                     "public.sim_pod_room_deleted('x', 1)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_role(sql, role, str(uuid.uuid4()), f"SELECT {call}")
