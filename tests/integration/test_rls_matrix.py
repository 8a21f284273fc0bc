"""Row-level security, cell by cell, for every table we own.

For each table in `public` and `nexus_private` the matrix below declares
what anon, a guest (Supabase's anonymous sign-in: role authenticated with
the JWT claim is_anonymous true), the owning member, another member and
service_role may do with select, insert, update and delete. Every cell is asserted by attempting the
operation as that role (SET LOCAL ROLE plus `request.jwt.claims`, as
PostgREST does) inside a transaction that is rolled back, against the real
migrations. A table without an entry fails the suite, so a new table cannot
ship without its matrix.

Reading a cell: allowed means the statement touches the arranged row (or
the insert succeeds); denied means it is refused with insufficient_privilege
(a revoked grant, a missing schema usage, or a WITH CHECK failure) or
touches no row. Any other error fails the cell: it means the statement got
past security and was stopped by something else.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Callable

import psycopg
import pytest

ROLES = ("anon", "guest", "owner", "other", "service_role")
OPS = ("select", "insert", "update", "delete")
ALL = "select insert update delete"


@dataclass
class Arrange:
    """Rows are arranged as the database owner inside the test's transaction."""

    conn: psycopg.Connection
    owner: str
    other: str

    def one(self, sql: str, params: tuple = ()) -> object:
        return self.conn.execute(sql, params).fetchone()[0]

    def user(self) -> str:
        uid = str(uuid.uuid4())
        self.conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (uid, f"{uid}@matrix.test"))
        return uid

    def net(self) -> str:
        return str(self.one("INSERT INTO public.voice_nets (code, label) VALUES (%s, 'Matrix') RETURNING id",
                            (f"matrix-{uuid.uuid4().hex[:10]}",)))

    def subscription(self, user_id: str) -> str:
        return str(self.one(
            "INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) VALUES (%s, %s, %s, %s) "
            "RETURNING id", (user_id, f"https://push.example.test/{uuid.uuid4().hex}", "B" * 87, "a" * 22)))

    def skill(self) -> str:
        return str(self.one("INSERT INTO public.skills (name) VALUES (%s) RETURNING id",
                            (f"Matrix {uuid.uuid4().hex[:10]}",)))

    def request(self, cadet: str, skill: str | None = None, **accepted: str) -> str:
        if accepted:
            return str(self.one(
                "INSERT INTO public.instruction_requests (skill_id, cadet_id, guide_id, status, accepted_at) "
                "VALUES (%s, %s, %s, 'ACCEPTED', now()) RETURNING id", (skill or self.skill(), cadet, accepted["guide"])))
        return str(self.one("INSERT INTO public.instruction_requests (skill_id, cadet_id) VALUES (%s, %s) RETURNING id",
                            (skill or self.skill(), cadet)))

    def sim_pod_values(self) -> tuple:
        """A pod for `owner` as cadet with a third member as guide (so `other` is neither)."""
        guide = self.user()
        pod = f"sim-pod-{uuid.uuid4().hex}"
        return (pod, self.request(self.owner, guide=guide), pod, self.owner, guide)

    def notification(self, user_id: str) -> str:
        return str(self.one("INSERT INTO public.notification_queue (recipient_id, type, title) "
                            "VALUES (%s, 'MATRIX_TEST', 'Matrix') RETURNING id", (user_id,)))


@dataclass
class Table:
    """One table's matrix: how to arrange an owned row, insert one, and who may do what."""

    key: tuple[str, ...]
    row: Callable[[Arrange], tuple]            # arrange a row owned by `owner`; its key values
    insert: Callable[[Arrange], tuple[str, tuple]]  # a valid new row owned by `owner`
    update: str                                # SET clause (a column the owner might touch)
    allowed: dict[str, str] = field(default_factory=dict)  # role -> ops it may perform


def _service_only() -> dict[str, str]:
    return {"service_role": ALL}


def _members_read() -> dict[str, str]:
    return {"owner": "select", "other": "select", "service_role": ALL}


MATRIX: dict[str, Table] = {
    "public.profiles": Table(
        key=("id",),
        row=lambda a: (a.owner,),
        insert=lambda a: (lambda uid: ("INSERT INTO public.profiles (id) VALUES (%s)", (uid,)))(
            a.conn.execute("DELETE FROM public.profiles WHERE id = %s RETURNING id", (a.user(),)).fetchone()[0]),
        update="callsign = 'Matrix'",
        allowed={"owner": "select update", "service_role": ALL},
    ),
    "public.voice_nets": Table(
        key=("id",),
        row=lambda a: (a.net(),),
        insert=lambda a: ("INSERT INTO public.voice_nets (code, label) VALUES (%s, 'New')",
                          (f"matrix-{uuid.uuid4().hex[:10]}",)),
        update="label = 'Renamed'",
        allowed=_members_read(),
    ),
    "public.push_subscriptions": Table(
        key=("id",),
        row=lambda a: (a.subscription(a.owner),),
        insert=lambda a: ("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) "
                          "VALUES (%s, %s, %s, %s)",
                          (a.owner, f"https://push.example.test/{uuid.uuid4().hex}", "B" * 87, "a" * 22)),
        update="failure_count = 1",
        # Members create subscriptions through notifications-subscribe only.
        allowed={"owner": "select delete", "service_role": ALL},
    ),
    "public.notification_queue": Table(
        key=("id",),
        row=lambda a: (a.notification(a.owner),),
        insert=lambda a: ("INSERT INTO public.notification_queue (recipient_id, type, title) "
                          "VALUES (%s, 'MATRIX_TEST', 'Injected')", (a.owner,)),
        update="read_at = now()",
        allowed={"owner": "select update", "service_role": ALL},
    ),
    "public.flares": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO public.flares (sender_id, flare_type, location) "
                             "VALUES (%s, 'MEDICAL', 'Stanton') RETURNING id", (a.owner,)),),
        insert=lambda a: ("INSERT INTO public.flares (sender_id, flare_type, location) VALUES (%s, 'COMBAT', 'Pyro')",
                          (a.owner,)),
        update="status = 'RESOLVED'",
        # `other` holds no Rescue/Medic role; responders are covered below.
        allowed={"owner": "select", "service_role": ALL},
    ),
    "nexus_private.push_deliveries": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO nexus_private.push_deliveries (notification_id, subscription_id) "
                             "VALUES (%s, NULL) RETURNING id", (a.notification(a.owner),)),),
        insert=lambda a: ("INSERT INTO nexus_private.push_deliveries (notification_id) VALUES (%s)",
                          (a.notification(a.owner),)),
        update="attempts = 1",
        allowed=_service_only(),
    ),
    "nexus_private.livekit_webhook_jobs": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO nexus_private.livekit_webhook_jobs (event_id, event_type, payload, "
                             "event_created_at) VALUES (%s, 'room_started', '{}', now()) RETURNING id",
                             (uuid.uuid4().hex,)),),
        insert=lambda a: ("INSERT INTO nexus_private.livekit_webhook_jobs (event_id, event_type, payload, "
                          "event_created_at) VALUES (%s, 'room_started', '{}', now())", (uuid.uuid4().hex,)),
        update="last_error = 'matrix'",
        allowed=_service_only(),
    ),
    "nexus_private.livekit_room_incarnations": Table(
        key=("room_sid",),
        row=lambda a: (a.one("INSERT INTO nexus_private.livekit_room_incarnations (room_sid, room_name, "
                             "last_event_at) VALUES (%s, 'matrix-room', now()) RETURNING room_sid",
                             (f"RM_{uuid.uuid4().hex[:12]}",)),),
        insert=lambda a: ("INSERT INTO nexus_private.livekit_room_incarnations (room_sid, room_name, last_event_at) "
                          "VALUES (%s, 'matrix-room', now())", (f"RM_{uuid.uuid4().hex[:12]}",)),
        update="room_name = 'renamed'",
        allowed=_service_only(),
    ),
    "nexus_private.livekit_reconcile_checks": Table(
        key=("room_name",),
        row=lambda a: (a.one("INSERT INTO nexus_private.livekit_reconcile_checks (room_name, checked_at) "
                             "VALUES (%s, now()) RETURNING room_name", (f"matrix-{uuid.uuid4().hex[:10]}",)),),
        insert=lambda a: ("INSERT INTO nexus_private.livekit_reconcile_checks (room_name, checked_at) "
                          "VALUES (%s, now())", (f"matrix-{uuid.uuid4().hex[:10]}",)),
        update="checked_at = now() - interval '1 minute'",
        allowed=_service_only(),
    ),
    "public.voice_presence": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, "
                             "user_id, joined_at, last_event_at) VALUES ('matrix-room', %s, %s, %s, now(), now()) "
                             "RETURNING id", (a.owner, f"PA_{uuid.uuid4().hex[:12]}", a.owner)),),
        insert=lambda a: ("INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, "
                          "user_id, joined_at, last_event_at) VALUES ('matrix-room', %s, %s, %s, now(), now())",
                          (a.owner, f"PA_{uuid.uuid4().hex[:12]}", a.owner)),
        update="participant_name = 'Renamed'",
        # Who is on which net is visible to every member; only the webhook writes it.
        allowed=_members_read(),
    ),
    "public.livekit_rooms": Table(
        key=("room_name",),
        row=lambda a: (a.one("INSERT INTO public.livekit_rooms (room_name, room_sid, last_event_at) "
                             "VALUES (%s, 'RM_matrix', now()) RETURNING room_name",
                             (f"matrix-{uuid.uuid4().hex[:10]}",)),),
        insert=lambda a: ("INSERT INTO public.livekit_rooms (room_name, room_sid, last_event_at) "
                          "VALUES (%s, 'RM_matrix', now())", (f"matrix-{uuid.uuid4().hex[:10]}",)),
        update="end_reason = 'MATRIX'",
        allowed=_members_read(),
    ),
    "public.livekit_recordings": Table(
        key=("egress_id",),
        row=lambda a: (a.one("INSERT INTO public.livekit_recordings (egress_id, status, info, last_event_at) "
                             "VALUES (%s, 'EGRESS_ACTIVE', '{}', now()) RETURNING egress_id",
                             (f"EG_{uuid.uuid4().hex[:12]}",)),),
        insert=lambda a: ("INSERT INTO public.livekit_recordings (egress_id, status, info, last_event_at) "
                          "VALUES (%s, 'EGRESS_ACTIVE', '{}', now())", (f"EG_{uuid.uuid4().hex[:12]}",)),
        update="error = 'matrix'",
        allowed=_service_only(),
    ),
    "public.voice_net_bridges": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO public.voice_net_bridges (source_net_id, target_net_id, created_by) "
                             "VALUES (%s, %s, %s) RETURNING id", (a.net(), a.net(), a.owner)),),
        insert=lambda a: ("INSERT INTO public.voice_net_bridges (source_net_id, target_net_id, created_by) "
                          "VALUES (%s, %s, %s)", (a.net(), a.net(), a.owner)),
        update="created_by = NULL",
        # Bridges are net layout every member sees; net-bridge (founder+) writes them.
        allowed=_members_read(),
    ),
    "public.skills": Table(
        key=("id",),
        row=lambda a: (a.skill(),),
        insert=lambda a: ("INSERT INTO public.skills (name) VALUES (%s)", (f"Matrix {uuid.uuid4().hex[:10]}",)),
        update="description = 'changed'",
        allowed=_members_read(),
    ),
    "public.certifications": Table(
        key=("user_id", "skill_id"),
        row=lambda a: (a.owner, a.one("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s) "
                                      "RETURNING skill_id", (a.owner, a.skill()))),
        insert=lambda a: ("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)",
                          (a.owner, a.skill())),
        update="certified_by = user_id",
        # Who may guide in what is public to members; certifying is the service role's.
        allowed=_members_read(),
    ),
    "public.instruction_requests": Table(
        key=("id",),
        row=lambda a: (a.request(a.owner),),
        insert=lambda a: ("INSERT INTO public.instruction_requests (skill_id, cadet_id) VALUES (%s, %s)",
                          (a.skill(), a.owner)),
        update="status = 'CANCELLED', closed_at = now()",
        # The owner is the cadet; `other` holds no certification (guides: below).
        allowed={"owner": "select", "service_role": ALL},
    ),
    "public.sim_pods": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO public.sim_pods (id, request_id, room_name, cadet_id, guide_id, expires_at) "
                             "VALUES (%s, %s, %s, %s, %s, now() + interval '30 minutes') RETURNING id",
                             a.sim_pod_values()),),
        insert=lambda a: ("INSERT INTO public.sim_pods (id, request_id, room_name, cadet_id, guide_id, expires_at) "
                          "VALUES (%s, %s, %s, %s, %s, now() + interval '30 minutes')", a.sim_pod_values()),
        update="expires_at = expires_at + interval '1 minute'",
        allowed={"owner": "select", "service_role": ALL},
    ),
    "public.admin_audit": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO public.admin_audit (actor, actor_label, action, member_id, after, reason) "
                             "VALUES ('operator', 'matrix', 'member.change', %s, '{}', 'matrix') RETURNING id",
                             (a.owner,)),),
        insert=lambda a: ("INSERT INTO public.admin_audit (actor, actor_label, action, member_id, after, reason) "
                          "VALUES ('operator', 'matrix', 'member.change', %s, '{}', 'injected')", (a.owner,)),
        update="reason = 'rewritten'",
        # Founders and pioneers read the trail (`other` is a founder, the owner a scout, the row about
        # the owner); only the definer functions append (issue 24); nobody rewrites or removes it.
        allowed={"other": "select", "service_role": "select"},
    ),
    "nexus_private.livekit_access_jobs": Table(
        key=("id",),
        row=lambda a: (a.one("INSERT INTO nexus_private.livekit_access_jobs (user_id, cause) "
                             "VALUES (%s, 'profile') RETURNING id", (a.user(),)),),
        insert=lambda a: ("INSERT INTO nexus_private.livekit_access_jobs (user_id, cause) VALUES (%s, 'profile')",
                          (a.user(),)),
        update="last_error = 'matrix'",
        allowed=_service_only(),
    ),
    "nexus_private.livekit_rights_versions": Table(
        key=("subject",),
        row=lambda a: (a.one("INSERT INTO nexus_private.livekit_rights_versions (subject, version) "
                             "VALUES (%s, 1) RETURNING subject", (f"room:matrix-{uuid.uuid4().hex[:10]}",)),),
        insert=lambda a: ("INSERT INTO nexus_private.livekit_rights_versions (subject, version) VALUES (%s, 1)",
                          (f"room:matrix-{uuid.uuid4().hex[:10]}",)),
        update="version = version + 1",
        allowed=_service_only(),
    ),
}


# -- running one cell ---------------------------------------------------------------

@pytest.fixture(scope="module")
def conn(database_url):
    with psycopg.connect(database_url) as c:
        yield c


@pytest.fixture(scope="module")
def people(sql):
    return {"owner": sql.member("scout").id, "other": sql.member("founder").id, "guest": sql.guest()}


def _claims(role: str, people: dict[str, str]) -> tuple[str, dict]:
    if role in ("owner", "other"):
        return "authenticated", {"sub": people[role], "role": "authenticated", "aud": "authenticated"}
    if role == "guest":
        return "authenticated", {"sub": people[role], "role": "authenticated", "aud": "authenticated",
                                 "is_anonymous": True}
    return role, {"role": role}


def _statement(name: str, spec: Table, op: str, arrange: Arrange, key: tuple) -> tuple[str, tuple]:
    where = " AND ".join(f"{col} = %s" for col in spec.key)
    if op == "select":
        return f"SELECT count(*) FROM {name} WHERE {where}", key
    if op == "update":
        return f"UPDATE {name} SET {spec.update} WHERE {where}", key
    if op == "delete":
        return f"DELETE FROM {name} WHERE {where}", key
    return spec.insert(arrange)


def attempt(conn: psycopg.Connection, role: str, claims: dict, sql: str, params: tuple) -> tuple[int | None, str | None]:
    """(rows touched, None) or (None, SQLSTATE); always rolled back to before the attempt."""
    outcome: tuple[int | None, str | None] = (None, None)
    try:
        with conn.transaction() as tx:
            conn.execute(f"SET LOCAL ROLE {role}")
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            cur = conn.execute(sql, params)
            outcome = (cur.fetchone()[0] if cur.description else cur.rowcount, None)
            raise psycopg.Rollback(tx)
    except psycopg.Error as e:
        outcome = (None, e.sqlstate)
    return outcome


CELLS = [(t, r, o) for t in MATRIX for r in ROLES for o in OPS]


@pytest.mark.parametrize("table,role,op", CELLS, ids=[f"{t}-{r}-{o}" for t, r, o in CELLS])
def test_rls_cell(conn, people, table, role, op):
    spec = MATRIX[table]
    expected = op in spec.allowed.get(role, "").split()
    with conn.transaction(force_rollback=True):
        arrange = Arrange(conn, people["owner"], people["other"])
        key = spec.row(arrange)
        sql, params = _statement(table, spec, op, arrange, key)
        # Given the arranged row, when `role` attempts `op` on it...
        db_role, claims = _claims(role, people)
        touched, error = attempt(conn, db_role, claims, sql, params)
    where = f"{role} {op} on {table}"
    if expected:
        assert error is None, f"{where}: expected allowed, refused with {error}"
        assert touched == 1, f"{where}: expected to touch the row, touched {touched}"
    else:
        assert error in (None, "42501"), f"{where}: expected denied, but failed past security with {error}"
        assert error == "42501" or touched == 0, f"{where}: expected denied, touched {touched} row(s)"
        if op == "insert":
            assert error == "42501", f"{where}: expected denied, but the insert succeeded"


# Every table has a matrix, and the matrix names no table that does not exist.
def test_every_table_has_a_matrix_entry(conn):
    rows = conn.execute("""
        SELECT format('%s.%s', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'nexus_private') AND c.relkind IN ('r', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')""").fetchall()
    conn.rollback()
    tables = {r[0] for r in rows}
    assert sorted(tables - MATRIX.keys()) == [], "tables without an RLS matrix entry"
    assert sorted(MATRIX.keys() - tables) == [], "matrix entries for tables that do not exist"


# Beyond the matrix: flare responders (Rescue or Medic) read every flare, unless in the brig.
@pytest.mark.parametrize("roles,sees", [(["Rescue"], True), (["medic"], True), ([], False), (["brigged"], False),
                                        (["Rescue", "brigged"], False), (["Medic", "Brigged"], False)])
def test_flare_responders_read_flares(conn, sql, people, roles, sees):
    responder = sql.member("scout", roles).id
    with conn.transaction(force_rollback=True):
        flare = conn.execute("INSERT INTO public.flares (sender_id, flare_type, location) "
                             "VALUES (%s, 'MEDICAL', 'Stanton') RETURNING id", (people["owner"],)).fetchone()[0]
        touched, error = attempt(conn, "authenticated", {"sub": responder, "role": "authenticated"},
                                 "SELECT count(*) FROM public.flares WHERE id = %s", (flare,))
    assert error is None and touched == (1 if sees else 0)


# Beyond the matrix: the guide of an accepted request reads it and its pod;
# a guide certified for the skill reads its pending requests (the job board).
def test_guides_read_their_requests_and_pods(conn, sql, people):
    guide = sql.member("voyager").id
    as_guide = {"sub": guide, "role": "authenticated"}
    with conn.transaction(force_rollback=True):
        a = Arrange(conn, people["owner"], people["other"])
        skill = a.skill()
        pending = a.request(people["owner"], skill)
        select = "SELECT count(*) FROM public.instruction_requests WHERE id = %s"
        assert attempt(conn, "authenticated", as_guide, select, (pending,)) == (0, None)
        conn.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)", (guide, skill))
        assert attempt(conn, "authenticated", as_guide, select, (pending,)) == (1, None)

        pod = f"sim-pod-{uuid.uuid4().hex}"
        accepted = a.request(people["owner"], guide=guide)
        conn.execute("INSERT INTO public.sim_pods (id, request_id, room_name, cadet_id, guide_id, expires_at) "
                     "VALUES (%s, %s, %s, %s, %s, now() + interval '1 hour')",
                     (pod, accepted, pod, people["owner"], guide))
        assert attempt(conn, "authenticated", as_guide, select, (accepted,)) == (1, None)
        assert attempt(conn, "authenticated", as_guide,
                       "SELECT count(*) FROM public.sim_pods WHERE id = %s", (pod,)) == (1, None)


# Beyond the matrix: a guest reads nothing even of what is addressed to it,
# and any value of the claim but false (or no claim) makes a guest.
def test_guests_read_nothing_even_their_own(conn, people):
    guest = people["guest"]
    as_guest = {"sub": guest, "role": "authenticated", "is_anonymous": True}
    as_member = {"sub": guest, "role": "authenticated", "is_anonymous": False}
    with conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO public.profiles (id) VALUES (%s)", (guest,))
        note = Arrange(conn, people["owner"], people["other"]).notification(guest)
        for sql, key in (("SELECT count(*) FROM public.profiles WHERE id = %s", guest),
                         ("SELECT count(*) FROM public.notification_queue WHERE id = %s", note)):
            assert attempt(conn, "authenticated", as_guest, sql, (key,)) == (0, None)
            assert attempt(conn, "authenticated", as_member, sql, (key,)) == (1, None)
        assert attempt(conn, "authenticated", as_guest,
                       "UPDATE public.profiles SET callsign = 'Squatter' WHERE id = %s", (guest,)) == (0, None)


@pytest.mark.parametrize("claim,sees", [(True, False), ("true", False), (None, False), ("false", False),
                                        (False, True), ("absent", True)])
def test_is_anonymous_claim(conn, people, claim, sees):
    claims = {"sub": people["other"], "role": "authenticated"}
    if claim != "absent":
        claims["is_anonymous"] = claim
    with conn.transaction(force_rollback=True):
        net = Arrange(conn, people["owner"], people["other"]).net()
        touched = attempt(conn, "authenticated", claims, "SELECT count(*) FROM public.voice_nets WHERE id = %s", (net,))
    assert touched == ((1 if sees else 0), None)
