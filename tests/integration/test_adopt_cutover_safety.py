"""The cutover grants no power by itself and never stops half-way (issue 24).

On the predecessor fixture (tests/predecessor.py) with the rows that broke it:
a self-made founder, a self-added Rescue role, an is_guest scout, flare
locations with a newline and of U+3000 alone, two skills sharing their first
120 characters, a sign-up during the window asking for an adopted callsign,
a profile without an auth user and an endpoint held twice once trimmed.
"""

from __future__ import annotations

import json
import shutil
import uuid

import psycopg
import pytest

from nexus.dbtools import main
from nexus.dbtools.verify import report
from nexus.migrate import MIGRATIONS_DIR, MigrationError, migrate
from tests import predecessor
from tests.integration.test_adopt_predecessor import _new_db, _one, _rows, reference  # noqa: F401 (fixture)
from tests.support import Client, sign_user_token

HELD = ("founder", "pioneer", "self_founder", "medic", "brigged", "rescuer", "self_rescue")


@pytest.fixture(scope="module")
def adopted(pg):
    """The predecessor fixture adopted with `nexus db adopt`, the supported path."""
    name, url = _new_db(pg, "adopt24")
    old = predecessor.build(url)
    assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
    yield old
    pg.drop_database(name)


def _state(url: str) -> tuple:
    """What the predecessor's app sees, and whether anything of ours is there."""
    return _rows(url, "SELECT (SELECT count(*) FROM public.profiles), "
                      "(SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
                      "  AND table_name = 'profiles' AND column_name = 'is_guest'), "
                      "to_regnamespace('nexus_adopt') IS NULL, to_regclass('public.livekit_rooms') IS NULL, "
                      "(SELECT count(*) FROM supabase_migrations.schema_migrations), "
                      "(SELECT count(*) FROM pg_trigger WHERE tgname = 'on_auth_user_created')")


# -- the conversion cannot fail on data -------------------------------------------------

def test_the_rows_that_broke_the_cutover_are_adopted(adopted):
    url = adopted.url
    locations = dict(_rows(url, "SELECT id::text, location FROM public.flares"))
    assert locations[adopted["flare_newline"]] == "Hurston Lorville gate"
    assert locations[adopted["flare_blank"]] == "unknown"
    names = dict(_rows(url, "SELECT id::text, name FROM public.skills"))
    a, b = names[adopted["skill_long_a"]], names[adopted["skill_long_b"]]
    assert a == ("Salvage " + "x" * 112) and b == ("Salvage " + "x" * 108 + " (2)")
    # the sign-up in the window: a vagrant profile, the callsign an adopted member holds left out
    assert _rows(url, "SELECT rank, callsign FROM public.profiles WHERE id = %s", (adopted["window_signup"],)) == [
        ("vagrant", None)]
    assert _one(url, "SELECT callsign FROM public.profiles WHERE id = %s", (adopted["scout"],)) == "Pathfinder"
    steps = dict(_rows(url, "SELECT step, rows FROM nexus_adopt.conversions"))
    assert steps["profiles: sign-ups in the window: callsign left out"] == 1
    assert steps["flares: location cleaned"] == 2
    assert steps["skills: name numbered"] == 2  # 'mining (2)' and the long name


def test_every_row_not_adopted_is_counted_with_its_reason(adopted):
    counted = {(t, r): n for t, r, n in _rows(adopted.url, "SELECT tbl, reason, rows FROM nexus_adopt.not_adopted")}
    assert counted == {
        ("profiles", "no auth user (nobody can sign in as it)"): 1,
        ("push_subscriptions", "no member (none, or a profile not adopted)"): 2,
        ("push_subscriptions", "endpoint held by a newer subscription once trimmed"): 1,
        ("voice_net_bridges", "self-bridge"): 1,
        ("voice_net_bridges", "second direction or repeat of a bridge adopted"): 1,
        ("certifications", "held until an operator confirms (nexus_adopt.holds)"): 1,  # the founder's
    }
    # and the one adopted of the two is the newer
    assert _rows(adopted.url, "SELECT user_id::text, created_at > now() FROM public.push_subscriptions "
                              "WHERE endpoint = 'https://fcm.googleapis.com/fcm/send/twice'") == [(adopted["scout"], True)]


# -- nobody holds more than an operator confirms ------------------------------------------

def test_self_made_powers_are_held_and_members_live_as_scouts(adopted, env):
    url = adopted.url
    live = {k: _rows(url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (adopted[k],))[0] for k in HELD}
    assert live == {"founder": ("scout", ["Command"]), "pioneer": ("scout", []), "self_founder": ("scout", ["Command"]),
                    "medic": ("scout", ["Ranger"]), "brigged": ("scout", ["brigged", "Command"]),
                    "rescuer": ("scout", ["Ranger"]), "self_rescue": ("scout", [])}
    held = {r[0]: r[1:] for r in _rows(url, "SELECT member_id::text, held_rank, held_roles, status FROM nexus_adopt.holds")}
    assert held == {adopted["founder"]: ("founder", [], "pending"), adopted["pioneer"]: ("pioneer", [], "pending"),
                    adopted["self_founder"]: ("founder", [], "pending"), adopted["medic"]: ("voyager", ["Medic"], "pending"),
                    adopted["brigged"]: ("voyager", [], "pending"), adopted["rescuer"]: (None, ["Rescue"], "pending"),
                    adopted["self_rescue"]: (None, ["Rescue"], "pending")}
    # the originals stay as they were
    assert _rows(url, "SELECT rank, roles FROM nexus_adopt.profiles WHERE id = %s", (adopted["self_founder"],)) == [
        ("founder", ["Command"])]

    # A self-made founder has no member-admin power.
    from functions.member_admin.app import app
    from tests.conftest import _reset_process_state

    env.setenv("DATABASE_URL", url)
    _reset_process_state()
    headers = {"authorization": f"Bearer {sign_user_token(adopted['self_founder'])}",
               "content-type": "application/json"}
    reply = Client(app).post({"userId": adopted["scout"], "rank": "voyager", "reason": "dev override"}, headers)
    assert reply.status == 403 and reply.json["error"] == "INSUFFICIENT_CLEARANCE", reply
    assert _one(url, "SELECT count(*) FROM public.admin_audit") == 0


def test_the_predecessors_guests_become_vagrants_and_are_listed(adopted, monkeypatch, capsys):
    url = adopted.url
    for key in ("guest", "is_guest_scout"):
        assert _rows(url, "SELECT rank, roles, callsign FROM public.profiles WHERE id = %s", (adopted[key],)) == [
            ("vagrant", [], None)]
    listed = dict(_rows(url, "SELECT member_id::text, guest_expires_at::date::text FROM nexus_adopt.guests"))
    assert listed == {adopted["guest"]: "2024-12-02", adopted["is_guest_scout"]: "2025-01-04"}

    from nexus.cli import main as cli_main

    monkeypatch.setenv("DATABASE_URL", url)
    assert cli_main(["admin", "holds"]) == 0
    out = capsys.readouterr().out
    assert "awaiting confirmation (7;" in out
    assert f"{adopted['medic']}  Doc  medic@example.test  held: rank voyager, roles Medic" in out
    assert f"{adopted['is_guest_scout']}  is_guest_scout@example.test  guest_expires_at 2025-01-04" in out
    assert "(expired)" in out


def _launch(sender: str):
    from functions.notifications.rescue import app

    headers = {"authorization": f"Bearer {sign_user_token(sender)}", "content-type": "application/json"}
    return Client(app).post({"location": "Stanton III - Crusader", "flareType": "MEDICAL"}, headers)


def _audit(url: str, member: str) -> list[tuple]:
    return _rows(url, "SELECT actor, actor_label, subject, before, after, reason FROM public.admin_audit "
                      "WHERE member_id = %s ORDER BY id", (member,))


@pytest.fixture
def medic_device():
    from tests.peers.push_service import PushService

    with PushService(lifetime=900) as service:
        yield service, service.new_device()


@pytest.fixture
def own_adopted(pg, medic_device):
    """An adoption of its own, for a test that changes members; the medic's browser is a real push peer."""
    import base64

    def std(b64url: str) -> str:
        return base64.b64encode(base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4))).decode()

    _, device = medic_device
    name, url = _new_db(pg, "adopt24_own")
    old = predecessor.build(url, medic_endpoint=device.endpoint, medic_p256dh=std(device.p256dh),
                            medic_auth=std(device.auth))
    assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
    yield old
    pg.drop_database(name)


def _vapid(env) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.integration.notifications.conftest import _b64url

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    for k, v in {"NEXUS_ENV": "dev", "NEXT_PUBLIC_VAPID_PUBLIC_KEY": _b64url(public),
                 "VAPID_PRIVATE_KEY": _b64url(key.private_numbers().private_value.to_bytes(32, "big")),
                 "VAPID_SUBJECT": "mailto:ops@nomadnexus.test", "PUSH_RETRY_BASE_SECONDS": "0"}.items():
        env.setenv(k, v)


def test_operators_confirm_or_decline_each_hold_and_member_admin_settles_it(own_adopted, medic_device, env,
                                                                          monkeypatch, capsys):
    from nexus.cli import main as cli_main
    from tests.conftest import _reset_process_state

    adopted = own_adopted
    push_service, device = medic_device
    url = adopted.url
    _vapid(env)
    env.setenv("DATABASE_URL", url)
    _reset_process_state()
    monkeypatch.setenv("DATABASE_URL", url)

    # While the responder roles are held, a flare reaches nobody.
    reply = _launch(adopted["twin"])
    assert reply.status == 202 and reply.json["respondersQueued"] == 0, reply

    # Confirm the medic: their rank and role come back, audited.
    assert cli_main(["admin", "hold", "confirm", "medic@example.test", "--reason", "known medic", "--as", "ops"]) == 0
    capsys.readouterr()
    assert _rows(url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (adopted["medic"],)) == [
        ("voyager", ["Ranger", "Medic"])]
    assert _audit(url, adopted["medic"]) == [
        ("operator", "ops", "adoption.confirm", {"rank": "scout", "roles": ["Ranger"]},
         {"rank": "voyager", "roles": ["Ranger", "Medic"], "held": {"rank": "voyager", "roles": ["Medic"], "skills": []}},
         "known medic")]
    reply = _launch(adopted["bidi"])
    assert reply.status == 202 and reply.json["respondersQueued"] == 1 and reply.json["devicesReached"] == 1, reply
    assert len(push_service.payloads_for(device)) == 1
    # settled once
    assert cli_main(["admin", "hold", "confirm", adopted["medic"], "--reason", "again"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "ALREADY_SETTLED"

    # Decline: nothing changes but the hold, audited.
    assert cli_main(["admin", "hold", "decline", adopted["rescuer"], "--reason", "not a rescuer"]) == 0
    capsys.readouterr()
    assert _rows(url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (adopted["rescuer"],)) == [
        ("scout", ["Ranger"])]
    assert [r[2] for r in _audit(url, adopted["rescuer"])] == ["adoption.decline"]

    # A member-admin change settles the hold, with its own audit row.
    assert cli_main(["admin", "member", adopted["pioneer"], "--rank", "voyager", "--reason", "vouched"]) == 0
    capsys.readouterr()
    audit_id = _one(url, "SELECT max(id) FROM public.admin_audit WHERE member_id = %s", (adopted["pioneer"],))
    assert _rows(url, "SELECT status, audit_id FROM nexus_adopt.holds WHERE member_id = %s", (adopted["pioneer"],)) == [
        ("settled", audit_id)]
    assert cli_main(["admin", "hold", "confirm", adopted["pioneer"], "--reason", "x"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "ALREADY_SETTLED"

    # Changed since the adoption some other way (the dashboard), or deleted: refused, nothing written.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE public.profiles SET roles = '{}' WHERE id = %s", (adopted["founder"],))
        conn.execute("DELETE FROM auth.users WHERE id = %s", (adopted["self_founder"],))
    audits = _one(url, "SELECT count(*) FROM public.admin_audit")
    # a reason or label the audit must not hold (a terminal escape) is a refusal, not an error
    with psycopg.connect(url, autocommit=True) as conn:
        for operator, reason in (("ops", "ok\x1b[2J"), ("ops\u202e", "ok"), ("ops", "x" * 501)):
            got = conn.execute("SELECT public.adoption_hold_settle(%s, true, %s, %s)",
                               (adopted["self_rescue"], operator, reason)).fetchone()[0]
            assert got["error"] == "BAD_REQUEST", got
    assert cli_main(["admin", "hold", "confirm", adopted["founder"], "--reason", "x"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "CHANGED_SINCE_ADOPTION"
    assert cli_main(["admin", "hold", "confirm", adopted["self_founder"], "--reason", "x"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "MEMBER_DELETED"
    assert _one(url, "SELECT count(*) FROM public.admin_audit") == audits
    assert _rows(url, "SELECT rank FROM public.profiles WHERE id = %s", (adopted["founder"],)) == [("scout",)]


# -- their leftover tables: closed to anon and guests ---------------------------------------

def _as(url: str, role: str, claims: dict | None, sql: str, params=None):
    with psycopg.connect(url) as conn:
        conn.execute(f"SET ROLE {role}")
        if claims is not None:
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps(claims),))
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.rollback()


def test_foreign_tables_give_anon_and_guests_nothing(adopted):
    url = adopted.url
    for table in ("public.player_status", "public.squads", "public.campfires"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(url, "anon", {"role": "anon"}, f"SELECT * FROM {table}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(url, "anon", {"role": "anon"}, "INSERT INTO public.player_status (user_id, status) VALUES (gen_random_uuid(), 'x')")
    guest = {"sub": str(uuid.uuid4()), "role": "authenticated", "is_anonymous": True}
    member = {"sub": adopted["scout"], "role": "authenticated", "is_anonymous": False}
    assert _as(url, "authenticated", guest, "SELECT count(*) FROM public.squads") == [(0,)]
    assert _as(url, "authenticated", guest, "SELECT count(*) FROM public.campfires") == [(0,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # row level security refuses the row
        _as(url, "authenticated", guest,
            "INSERT INTO public.player_status (user_id, status) VALUES (gen_random_uuid(), 'x')")
    # members keep what the old frontend uses
    assert _as(url, "authenticated", member, "SELECT count(*) FROM public.squads") == [(1,)]
    assert _as(url, "authenticated", member,
               "INSERT INTO public.player_status (user_id, status) VALUES (%s, 'x') RETURNING status",
               (adopted["scout"],)) == [("x",)]

    warned = {(w.object, w.detail) for w in report(url).warnings}
    assert not any("anon" in d and o.startswith("public.") and not o.endswith(")") for o, d in warned), warned
    assert not any("guests" in d and not o.endswith(")") for o, d in warned), warned
    assert ("public.player_status", "policies nexus_adopt_members_as_before let members write every row") in warned


def test_the_warnings_name_what_stays_open_to_guests(adopted):
    """A foreign table the adoption did not close (made open again by hand) is named for guests and anon."""
    url = adopted.url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP POLICY nexus_adopt_guests_none ON public.events")
        conn.execute("GRANT SELECT ON public.events TO anon")
        conn.execute("ALTER TABLE public.player_status DISABLE ROW LEVEL SECURITY")
    try:
        details = [w.detail for w in report(url).warnings if w.object in ("public.events", "public.player_status")]
        assert "guests (anonymous sign-ins, role authenticated) pass its policies as members do: " \
               "no restrictive policy refuses them" in details
        assert "row level security is off: members and guests (authenticated) can read and write every row " \
               "through the API" in details
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE public.player_status ENABLE ROW LEVEL SECURITY")
            conn.execute("REVOKE SELECT ON public.events FROM anon")
            conn.execute("CREATE POLICY nexus_adopt_guests_none ON public.events AS RESTRICTIVE FOR ALL TO authenticated "
                         "USING (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb) "
                         "WITH CHECK (coalesce((SELECT auth.jwt()) -> 'is_anonymous', 'false'::jsonb) = 'false'::jsonb)")


# -- one transaction, or nothing --------------------------------------------------------------

def test_the_set_aside_refuses_to_run_one_file_at_a_time(pg, capsys):
    """As `supabase db push` applies it (its own transaction), the set-aside refuses: nothing changes."""
    name, url = _new_db(pg, "adopt24_push")
    try:
        predecessor.build(url)
        before = _state(url)
        first = sorted(MIGRATIONS_DIR.glob("*.sql"))[0]
        with psycopg.connect(url) as conn:
            with pytest.raises(psycopg.errors.RaiseException, match="one file at a time"):
                conn.execute(first.read_text())
        assert _state(url) == before
        assert main(["adopt", "--repair-history-only", "--url", url]) == 2
        assert "supabase db push" in capsys.readouterr().err
        assert _state(url) == before
    finally:
        pg.drop_database(name)


def test_adopt_is_one_transaction_a_late_failure_changes_nothing(pg, tmp_path, capsys, reference):
    name, url = _new_db(pg, "adopt24_tx")
    try:
        predecessor.build(url)
        before = _state(url)
        # a folder cut before the conversion is refused before anything runs
        cut = tmp_path / "cut"
        cut.mkdir()
        for f in sorted(MIGRATIONS_DIR.glob("*.sql"))[:5]:
            shutil.copy(f, cut / f.name)
        with pytest.raises(MigrationError, match="stop before 20251220000100"):
            migrate(url, cut, log=lambda *_: None)
        assert _state(url) == before
        # a failure after the conversion rolls back the set-aside too
        boom = tmp_path / "boom"
        shutil.copytree(MIGRATIONS_DIR, boom)
        (boom / "20251299000000_boom.sql").write_text("SELECT 1 / 0;\n")
        assert main(["adopt", "--url", url, "--snapshot-taken", "--dir", str(boom)]) == 1
        assert "rolled back as a whole" in capsys.readouterr().err
        assert _state(url) == before
        assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
        capsys.readouterr()
        assert report(url, reference_url=reference).differences == []
    finally:
        pg.drop_database(name)


# -- certifications were self-made too ------------------------------------------------------

def test_self_made_certifications_are_held_until_an_operator_confirms(pg, env, monkeypatch, capsys):
    """The predecessor's certifications had RLS off: anyone could make themselves a guide of any
    skill (cadets' requests, a private sim pod with them). Held like ranks and roles."""
    from nexus.cli import main as cli_main

    name, url = _new_db(pg, "adopt24_cert")
    old = predecessor.build(url)
    with psycopg.connect(url, autocommit=True) as conn:  # a scout certifies themselves through the API
        conn.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)",
                     (old["scout"], old["skill_dup"]))
    try:
        assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
        capsys.readouterr()
        guides = "SELECT user_id::text, skill_id::text FROM public.certifications ORDER BY 1"
        assert _rows(url, guides) == []
        held = dict(_rows(url, "SELECT member_id::text, held_skills::text[] FROM nexus_adopt.holds "
                               "WHERE held_skills <> '{}'"))
        assert held == {old["founder"]: [old["skill"]], old["scout"]: [old["skill_dup"]]}
        counted = dict(_rows(url, "SELECT reason, rows FROM nexus_adopt.not_adopted WHERE tbl = 'certifications'"))
        assert counted == {"held until an operator confirms (nexus_adopt.holds)": 2}

        monkeypatch.setenv("DATABASE_URL", url)
        assert cli_main(["admin", "holds", "--json"]) == 0
        listed = {h["userId"]: h["heldSkills"] for h in json.loads(capsys.readouterr().out)["holds"]}
        assert listed[old["scout"]] == [old["skill_dup"]]
        assert cli_main(["admin", "hold", "confirm", old["scout"], "--reason", "known guide", "--as", "ops"]) == 0
        capsys.readouterr()
        assert _rows(url, guides) == [(old["scout"], old["skill_dup"])]
        assert _rows(url, "SELECT rank FROM public.profiles WHERE id = %s", (old["scout"],)) == [("scout",)]
        assert _one(url, "SELECT after -> 'held' -> 'skills' FROM public.admin_audit WHERE member_id = %s",
                    (old["scout"],)) == [old["skill_dup"]]
        assert cli_main(["admin", "hold", "decline", old["founder"], "--reason", "not a guide"]) == 0
        capsys.readouterr()
        assert _rows(url, guides) == [(old["scout"], old["skill_dup"])]
    finally:
        pg.drop_database(name)


# -- `nexus admin hold`: bad input is a usage error ------------------------------------------

@pytest.mark.parametrize("bad", [["--as", "   "], ["--as", "ops\u202e"], ["--reason", " \t "], ["--reason", "ok\x1b[2J"],
                                 ["3f1c-not-a-uuid"], ["   "]],
                         ids=["blank label", "bidi label", "blank reason", "escape in reason", "malformed id",
                              "blank user"])
def test_hold_refuses_a_label_or_reason_the_audit_cannot_hold_as_a_usage_error(database_url, monkeypatch, capsys, bad):
    from nexus.cli import main as cli_main

    monkeypatch.setenv("DATABASE_URL", database_url)
    audits = _one(database_url, "SELECT count(*) FROM public.admin_audit")
    with pytest.raises(SystemExit) as stopped:  # not a traceback, not a refusal from the database
        user = [] if bad[0].startswith("--") else bad
        cli_main(["admin", "hold", "confirm", *(user or [str(uuid.uuid4())]), "--reason", "known medic", "--as", "ops",
                  *([] if user else bad)])
    assert stopped.value.code == 2
    assert "usage:" in capsys.readouterr().err
    assert _one(database_url, "SELECT count(*) FROM public.admin_audit") == audits


def test_what_members_wrote_reaches_the_operators_terminal_only_as_plain_text(pg, monkeypatch, capsys):
    """profiles.email and callsign were the member's own to write on the predecessor: an escape
    sequence or a bidi override in them must not reach the operator's terminal through
    `nexus db adopt` or `nexus admin holds`."""
    from nexus.cli import main as cli_main

    name, url = _new_db(pg, "adopt24_tty")
    old = predecessor.build(url)
    with psycopg.connect(url, autocommit=True) as conn:  # the founder's own row, through the API
        conn.execute("UPDATE public.profiles SET email = %s, callsign = %s WHERE id = %s",
                     ("ops\x1b]0;owned\x07@example.test", "Boss\u202eredivorP", old["founder"]))
        conn.execute("UPDATE public.profiles SET email = %s WHERE id = %s",
                     ("g\x1b[2J\u202e@example.test", old["guest"]))
    try:
        assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
        monkeypatch.setenv("DATABASE_URL", url)
        assert cli_main(["admin", "holds"]) == 0
        out = capsys.readouterr().out
        assert old["founder"] in out and old["guest"] in out
        assert not {"\x1b", "\x07", "\u202e"} & set(out), [line for line in out.splitlines() if "\x1b" in line]
    finally:
        pg.drop_database(name)


def test_holds_name_members_by_the_email_they_sign_in_with(pg, monkeypatch, capsys):
    """profiles.email was the member's own to write on the predecessor: a self-made founder who
    wrote a known medic's address there must not be listed under it for the operator to confirm."""
    from nexus.cli import main as cli_main

    name, url = _new_db(pg, "adopt24_mail")
    old = predecessor.build(url)
    with psycopg.connect(url, autocommit=True) as conn:
        medic_mail = conn.execute("SELECT email FROM auth.users WHERE id = %s", (old["medic"],)).fetchone()[0]
        own = conn.execute("SELECT email FROM auth.users WHERE id = %s", (old["self_founder"],)).fetchone()[0]
        conn.execute("UPDATE public.profiles SET email = %s WHERE id = %s", (medic_mail, old["self_founder"]))
        conn.execute("UPDATE public.profiles SET email = %s WHERE id = %s", (medic_mail, old["guest"]))
    try:
        assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
        monkeypatch.setenv("DATABASE_URL", url)
        capsys.readouterr()
        assert cli_main(["admin", "holds", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        emails = {h["userId"]: h["email"] for h in listed["holds"]} | {g["userId"]: g["email"] for g in listed["guests"]}
        assert emails[old["self_founder"]] == own
        assert emails[old["guest"]] != medic_mail
        assert [k for k, v in emails.items() if v == medic_mail] == [old["medic"]]
    finally:
        pg.drop_database(name)


def test_a_guest_without_guest_expires_at_is_removed_with_the_expired(pg, monkeypatch, capsys):
    """Every guest of the predecessor was a 24-hour account; one whose guest_expires_at is NULL
    is not 'not expired', and the guide's removal takes it with the expired ones."""
    from nexus.cli import main as cli_main

    name, url = _new_db(pg, "adopt24_noexp")
    old = predecessor.build(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE public.profiles SET guest_expires_at = NULL WHERE id = %s", (old["guest"],))
    try:
        assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
        monkeypatch.setenv("DATABASE_URL", url)
        capsys.readouterr()
        assert cli_main(["admin", "holds"]) == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines() if old["guest"] in ln)
        assert "not expired" not in line and "guest_expires_at -" in line, line
        assert cli_main(["admin", "holds", "--json"]) == 0
        guests = {g["userId"]: g["expired"] for g in json.loads(capsys.readouterr().out)["guests"]}
        assert guests[old["guest"]] is True
        # the removal the cutover guide gives
        guide = open("docs/cutover.md").read()
        removal = guide[guide.index("DELETE FROM auth.users"):].split(";")[0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(removal)
        assert _rows(url, "SELECT id::text FROM public.profiles WHERE id IN (%s, %s)",
                     (old["guest"], old["scout"])) == [(old["scout"],)]
    finally:
        pg.drop_database(name)


def test_an_anonymous_sign_in_keeps_no_power_of_the_predecessor(pg, monkeypatch, capsys):
    """A guest of ours (an anonymous sign-in) starts with no profile, and one made permanent
    starts as vagrant; the predecessor gave every session a scout and let each set its own rank
    and roles. Adopted, such a session is a vagrant with nothing held for an operator to confirm."""
    name, url = _new_db(pg, "adopt24_anon")
    old = predecessor.build(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE public.profiles SET rank = 'founder', roles = '{Medic,Ranger}' WHERE id = %s",
                     (old["anon_profiled"],))
        skill = conn.execute("SELECT id FROM public.skills LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s)",
                     (old["anon_profiled"], skill))
    try:
        assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
        assert _rows(url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (old["anon_profiled"],)) == [
            ("vagrant", ["Ranger"])]
        assert _rows(url, "SELECT count(*) FROM nexus_adopt.holds WHERE member_id = %s", (old["anon_profiled"],)) == [(0,)]
        assert _rows(url, "SELECT count(*) FROM public.certifications WHERE user_id = %s", (old["anon_profiled"],)) == [(0,)]
        # made permanent (an email linked), still a vagrant
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE auth.users SET is_anonymous = false, email = 'ghost@example.test' WHERE id = %s",
                         (old["anon_profiled"],))
        assert _one(url, "SELECT rank FROM public.profiles WHERE id = %s", (old["anon_profiled"],)) == "vagrant"
    finally:
        pg.drop_database(name)


def test_responder_roles_spelled_with_other_blanks_are_held_too(pg):
    """A role the predecessor stored as 'medic<TAB>' or '<NBSP>Rescue' is a responder role: the
    canonical spelling (20251221) trims every White_Space character, so the conversion, which runs
    before it, must hold it as well, or the member becomes a responder nobody confirmed."""
    name, url = _new_db(pg, "adopt24_blanks")
    try:
        old = predecessor.build(url)
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            predecessor._user(conn, old.ids, "tab_medic", created="2025-01-03",
                              profile={"rank": "scout", "roles": ["medic\t", "\u00a0Rescue\u3000", "Ranger"],
                                       "callsign": "Tabbed"})
        assert main(["adopt", "--url", url, "--snapshot-taken"]) == 0
        assert _rows(url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (old["tab_medic"],)) == [
            ("scout", ["Ranger"])]
        assert _rows(url, "SELECT held_rank, held_roles, status FROM nexus_adopt.holds WHERE member_id = %s",
                     (old["tab_medic"],)) == [(None, ["Medic", "Rescue"], "pending")]
    finally:
        pg.drop_database(name)
