"""Adopting the predecessor's database (issue 17): the same chain that builds an
empty database takes over one in the predecessor's shape with its data, ends
in our contract, keeps every row's meaning, leaves what is not ours in place,
and the functions then work for adopted members.

The predecessor-shaped database is built by tests/predecessor.py from
../shared/predecessor-schema.md, with rows covering each convention.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid

import psycopg
import pytest

from nexus.dbtools import catalog, main, scratch
from nexus.dbtools.verify import report
from nexus.migrate import MIGRATIONS_DIR, MigrationError, migrate
from tests import predecessor
from tests.integration.notifications.conftest import run_fanout
from tests.peers.push_service import PushService
from tests.support import Client, sign_user_token

OUR_TABLES = ("profiles", "voice_nets", "voice_net_bridges", "voice_presence", "push_subscriptions",
              "notification_queue", "flares", "skills", "certifications", "instruction_requests")


def _new_db(pg, prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    return name, pg.create_database(name)


@pytest.fixture(scope="module")
def reference(pg):
    """A fresh replay of the chain: what `verify` compares with."""
    name, url = _new_db(pg, "adopt_ref")
    scratch.replay(url)
    yield url
    pg.drop_database(name)


@pytest.fixture(scope="module")
def push_service():
    with PushService(lifetime=900) as service:
        yield service


@pytest.fixture(scope="module")
def medic_device(push_service):
    return push_service.new_device()


def _std(b64url: str) -> str:
    raw = base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4))
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def adopted(pg, medic_device):
    """A predecessor-shaped database, then `nexus db migrate` on it."""
    name, url = _new_db(pg, "adopt")
    # The medic's browser subscribed through the predecessor: btoa() keys.
    old = predecessor.build(url, medic_endpoint=medic_device.endpoint,
                            medic_p256dh=_std(medic_device.p256dh), medic_auth=_std(medic_device.auth))
    assert main(["migrate", "--url", url]) == 0
    yield old
    pg.drop_database(name)


def _rows(url: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def _one(url: str, sql: str, params=None):
    rows = _rows(url, sql, params)
    return rows[0][0] if rows else None


# -- the chain ends in our contract ------------------------------------------------

def test_a_predecessor_database_is_migrated_into_our_contract(adopted, reference, capsys):
    result = report(adopted.url, reference_url=reference)
    assert result.differences == []
    foreign = {(d.kind, d.name) for d in result.foreign}
    assert {("table", "public.squads"), ("table", "public.campfires"), ("column", "public.profiles.email"),
            ("column", "public.voice_nets.type"), ("function", "public.handle_new_user()"),
            ("type", "public.instruction_request_status")} <= foreign
    warned = {(w.object, w.detail.split(":")[0]) for w in result.warnings}
    assert ("public.handle_new_user()", "SECURITY DEFINER function anon can execute (it runs with its owner's rights)") in warned
    # their leftover tables are closed to anon (issue 24): no warning names anon on a table
    assert not any("anon" in w.detail and not w.object.endswith(")") for w in result.warnings), result.warnings

    code = main(["verify", "--url", adopted.url, "--reference", reference])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "foreign:" in out and "table public.squads" in out and "WARN" in out
    code = main(["lint", "--url", adopted.url])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lint: 0 finding(s)" in out and "public.handle_new_user()" in out
    code = main(["smoke", "--url", adopted.url])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "public.player_status: anon EXPOSED" not in out and ", 0 failed" in out


def test_the_predecessor_history_is_reverted_and_kept(adopted):
    versions = [v for (v,) in _rows(adopted.url, "SELECT version FROM supabase_migrations.schema_migrations")]
    assert versions and all(v >= "20251208000000" for v in versions)
    kept = [v for (v,) in _rows(adopted.url, "SELECT version FROM nexus_adopt.reverted_history")]
    assert len(kept) == 14 and "20250106000001" in kept


def test_our_tables_keep_no_predecessor_policy_and_no_blanket_grant(adopted, reference):
    def policies(url):
        return sorted(_rows(url, "SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'public' "
                                 "AND tablename = ANY(%s)", (list(OUR_TABLES),)))
    assert policies(adopted.url) == policies(reference)
    for table in OUR_TABLES:
        privs = _one(adopted.url, "SELECT array_agg(p) FROM unnest(ARRAY['INSERT','UPDATE','DELETE','TRUNCATE']) p "
                                  "WHERE has_table_privilege('anon', %s::regclass, p)", (f"public.{table}",))
        assert privs is None, (table, privs)
        assert _one(adopted.url, "SELECT has_table_privilege('anon', %s::regclass, 'SELECT')", (f"public.{table}",)) is False
    # The triggers on auth.users (sign-up, soft delete) are ours alone.
    def triggers(url):
        return sorted(_rows(url, "SELECT t.tgname, p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                                 "WHERE t.tgrelid = 'auth.users'::regclass AND NOT t.tgisinternal"))
    assert triggers(adopted.url) == triggers(reference)
    assert {proc for _, proc in triggers(adopted.url)} == {"handle_new_auth_user", "auth_user_soft_deleted"}


def test_every_member_has_a_profile_and_anonymous_sign_ins_do_not(adopted):
    assert _one(adopted.url, "SELECT count(*) FROM auth.users u WHERE NOT u.is_anonymous AND NOT EXISTS "
                             "(SELECT 1 FROM public.profiles p WHERE p.id = u.id)") == 0
    assert _rows(adopted.url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (adopted["no_profile"],)) == [
        ("vagrant", [])]
    assert _one(adopted.url, "SELECT count(*) FROM public.profiles WHERE id = %s", (adopted["anonymous"],)) == 0
    # A sign-up from now on goes through our trigger: vagrant.
    uid = str(uuid.uuid4())
    with psycopg.connect(adopted.url, autocommit=True) as conn:
        conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'new@example.test')", (uid,))
        assert conn.execute("SELECT rank FROM public.profiles WHERE id = %s", (uid,)).fetchone() == ("vagrant",)
        conn.execute("DELETE FROM auth.users WHERE id = %s", (uid,))


def test_nothing_of_theirs_is_dropped(adopted):
    url = adopted.url
    assert _one(url, "SELECT count(*) FROM public.squads") == 1
    assert _one(url, "SELECT count(*) FROM public.campfire_members") == 1
    assert _one(url, "SELECT email FROM public.profiles WHERE id = %s", (adopted["scout"],)) == "scout@example.test"
    assert _one(url, "SELECT discord_id FROM public.profiles WHERE id = %s", (adopted["scout"],)) == "1234"
    assert _one(url, "SELECT type FROM public.voice_nets WHERE id = %s", (adopted["net_command"],)) == "command"
    assert _one(url, "SELECT category FROM public.skills WHERE id = %s", (adopted["skill"],)) == "Industry"
    assert _one(url, "SELECT to_regprocedure('public.handle_new_user()') IS NOT NULL") is True
    # Their keys to the tables we took over now point at ours: deleting a member cascades.
    assert _one(url, "SELECT confrelid::regclass::text FROM pg_constraint "
                     "WHERE conname = 'campfire_members_user_id_fkey'") == "profiles"
    # The rows as they were stay on record, out of the API's reach.
    assert _one(url, "SELECT count(*) FROM nexus_adopt.profiles") == 17
    assert _one(url, "SELECT has_schema_privilege('anon', 'nexus_adopt', 'USAGE')") is False


# -- meaning, row by row ------------------------------------------------------------

def test_ranks_and_roles_keep_their_meaning(adopted):
    got = {k: _rows(adopted.url, "SELECT rank, roles, callsign FROM public.profiles WHERE id = %s", (adopted[k],))[0]
           for k in ("old_member", "scout", "medic", "rescuer", "brig", "brigged", "emptied", "founder", "pioneer")}
    assert got["old_member"] == ("vagrant", [], "Old Timer")           # NULL rank read as vagrant
    assert got["scout"] == ("scout", [], "Pathfinder")                 # NULL roles
    # ranks above scout and the responder roles are held until an operator confirms them (issue 24)
    assert got["medic"] == ("scout", ["Ranger"], "Doc")
    assert got["rescuer"] == ("scout", ["Ranger"], "Hook")             # 'Scout '; Ranger: as first written
    assert got["brig"][:2] == ("scout", ["brigged"])
    assert got["brigged"][:2] == ("scout", ["brigged", "Command"])
    assert got["emptied"] == ("vagrant", [], None)                     # a blank callsign is none
    assert got["founder"][2] == "Boss Man"                             # control character cleaned
    assert got["pioneer"][2] == "X" * 64
    held = dict(_rows(adopted.url, "SELECT member_id::text, array[coalesce(held_rank, '-')] || held_roles "
                                   "FROM nexus_adopt.holds"))
    assert {k: held.get(adopted[k]) for k in ("medic", "rescuer", "brigged", "founder", "pioneer")} == {
        "medic": ["voyager", "Medic"], "rescuer": ["-", "Rescue"], "brigged": ["voyager"], "founder": ["founder"],
        "pioneer": ["pioneer"]}


def test_adopted_callsigns_follow_the_rules_members_now_live_by(adopted):
    """Given predecessor callsigns that collide after case folding and NFKC, carry a bidi override, or
    belong to a guest, when the chain adopts them, then collisions stay (the newer grandfathered), the
    override and the guest's callsign are cleared, and nobody new can take a collided callsign."""
    def profile(key):
        return _rows(adopted.url, "SELECT callsign, callsign_grandfathered FROM public.profiles WHERE id = %s",
                     (adopted[key],))[0]
    assert profile("medic") == ("Doc", False)          # the oldest holder, under the unique index
    assert profile("twin") == ("ＤＯＣ", True)          # kept as it was, grandfathered
    assert profile("bidi") == (None, False)
    assert profile("anon_profiled") == (None, False)   # the row stays (others may reference it)
    steps = dict(_rows(adopted.url, "SELECT step, rows FROM nexus_adopt.conversions WHERE step LIKE 'profiles: %%'"))
    assert steps["profiles: colliding callsigns kept (grandfathered)"] == 1
    assert steps["profiles: callsigns breaking the text rules cleared"] == 1
    assert steps["profiles: guests (anonymous sign-ins) lose their callsigns"] == 1
    with psycopg.connect(adopted.url, autocommit=True) as conn:
        uid = conn.execute("INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'late@example.test') "
                           "RETURNING id").fetchone()[0]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE public.profiles SET callsign = 'doc' WHERE id = %s", (uid,))
        # the trigger is back on: a later insert cannot grandfather itself
        assert _one(adopted.url, "SELECT tgenabled FROM pg_trigger WHERE tgname = 'profiles_callsign_unclaimed'") == "O"


def test_net_thresholds_and_codes_keep_their_meaning(adopted):
    def net(key):
        return _rows(adopted.url, "SELECT code, label, min_rank_to_join, min_rank_to_rx, min_rank_to_tx "
                                  "FROM public.voice_nets WHERE id = %s", (adopted[f"net_{key}"],))[0]
    assert net("command") == ("command", "Net command", "founder", "founder", "scout")
    assert net("general") == ("general", "Net general", "voyager", "voyager", "scout")  # NULL join -> rx
    assert net("open") == ("open-mic", "Net open", "vagrant", "vagrant", "scout")     # 'everyone' let all in
    nocode = net("nocode")
    assert nocode[0] == "net-" + adopted["net_nocode"].replace("-", "") and nocode[1] == nocode[0]
    assert nocode[2:] == ("scout", "scout", "vagrant")                                  # empty tx is vagrant
    assert net("dup_old")[0] == "ops"
    assert net("dup_new") == ("ops-" + adopted["net_dup_new"].replace("-", "")[:8], "Net dup_new",
                              "voyager", "vagrant", "voyager")


def test_bridges_are_unordered_pairs_without_self_bridges(adopted):
    rows = _rows(adopted.url, "SELECT id::text FROM public.voice_net_bridges")
    assert sorted(r[0] for r in rows) == sorted([adopted["bridge_ab"], adopted["bridge_ac"]])


def test_push_keys_are_the_same_bytes_in_base64url(adopted, medic_device):
    rows = _rows(adopted.url, "SELECT user_id::text, endpoint, p256dh, auth FROM public.push_subscriptions "
                              "WHERE user_id = %s", (adopted["medic"],))
    assert rows == [(adopted["medic"], medic_device.endpoint, medic_device.p256dh, medic_device.auth)]
    old = _rows(adopted.url, "SELECT p256dh FROM nexus_adopt.push_subscriptions WHERE user_id = %s", (adopted["medic"],))
    assert base64.b64decode(old[0][0]) == base64.urlsafe_b64decode(rows[0][2] + "=")


def test_notifications_are_mapped_history(adopted):
    rows = {r[0]: r[1:] for r in _rows(
        adopted.url, "SELECT id::text, type, title, payload, read_at IS NOT NULL, sent_at, created_at > now() - "
                     "interval '1 day' FROM public.notification_queue")}
    assert len(rows) == 10
    expect = {"academy_request": ("ACADEMY_REQUEST", "Training requested"),
              "academy_accept": ("ACADEMY_ACCEPTED", "Your guide is ready"),
              "rescue_flare": ("RESCUE_FLARE", "Medical rescue flare"),
              "combat_flare": ("RESCUE_FLARE", "Combat rescue flare"),
              "mention": ("MENTION", "You were mentioned")}
    for old_type, (new_type, title) in expect.items():
        unsent = rows[adopted[f"note_{old_type}_unsent"]]
        read = rows[adopted[f"note_{old_type}_read"]]
        assert unsent[:2] == (new_type, title) and read[:2] == (new_type, f"Old {old_type}")
        assert unsent[2]["adoptedFrom"]["type"] == old_type
        assert (unsent[3], read[3]) == (False, True) and unsent[4] is None
        assert unsent[5] is True  # retention counts from adoption
    assert rows[adopted["note_combat_flare_unsent"]][2]["flareType"] == "COMBAT"
    assert rows[adopted["note_rescue_flare_unsent"]][2]["flareType"] == "MEDICAL"
    assert set(rows[adopted["note_mention_unsent"]][2]) == {"adoptedFrom"}   # NULL payload -> {}
    # Adopted rows are never queued for a push.
    assert _one(adopted.url, "SELECT count(*) FROM nexus_private.push_deliveries") == 0


def test_flares_keep_type_and_a_gone_sender(adopted):
    rows = dict((r[0], r[1:]) for r in _rows(
        adopted.url, "SELECT id::text, sender_id::text, flare_type, status FROM public.flares"))
    assert rows[adopted["flare_orphan"]] == (None, "COMBAT", "ACTIVE")
    assert rows[adopted["flare_sent"]] == (adopted["scout"], "MEDICAL", "RESOLVED")


def test_instruction_requests_close_and_deduplicate(adopted):
    rows = dict((r[0], r[1:]) for r in _rows(
        adopted.url, "SELECT id::text, status, guide_id::text, sim_pod_id, closed_at IS NOT NULL "
                     "FROM public.instruction_requests"))
    assert rows[adopted["req_pending_new"]] == ("PENDING", None, None, False)
    assert rows[adopted["req_pending_old"]] == ("CANCELLED", None, None, True)
    assert rows[adopted["req_active"]] == ("COMPLETED", adopted["founder"], None, True)
    assert rows[adopted["req_completed"]][0] == "COMPLETED"
    assert rows[adopted["req_cancelled"]][0] == "CANCELLED"
    assert _one(adopted.url, "SELECT name FROM public.skills WHERE id = %s", (adopted["skill_dup"],)) == "mining (2)"


def test_presence_becomes_closed_history(adopted):
    rows = _rows(adopted.url, "SELECT room_name, left_at IS NOT NULL, left_reason FROM public.voice_presence "
                              "ORDER BY room_name")
    assert rows == [("command", True, "closed_at_adoption"), ("general", True, "adopted_history")]


def test_each_conversion_is_reported_with_its_count(adopted):
    steps = dict(_rows(adopted.url, "SELECT step, rows FROM nexus_adopt.conversions"))
    assert steps["profiles: rank NULL or empty -> vagrant"] == 1
    assert steps["profiles: rank lower-cased or trimmed"] == 1
    assert steps["voice_net_bridges: self-bridge removed"] == 1
    assert steps["voice_net_bridges: second direction removed"] == 1
    assert steps["push_subscriptions: keys re-encoded to base64url"] == 2
    assert steps["instruction_requests: ACTIVE -> COMPLETED"] == 1
    assert steps["voice_presence: open rows closed"] == 1


# -- the functions work for adopted members ------------------------------------------

@pytest.fixture
def adopted_env(env, adopted):
    from tests.conftest import _reset_process_state

    env.setenv("DATABASE_URL", adopted.url)
    _reset_process_state()
    return env


def test_an_adopted_scout_gets_a_token(adopted_env, adopted):
    from functions.livekit_token.app import app

    client = Client(app)
    headers = {"authorization": f"Bearer {sign_user_token(adopted['scout'])}", "content-type": "application/json"}
    r = client.post({"roomName": "ops", "participantName": "Pathfinder"}, headers)
    assert r.status == 200, r
    assert r.json["grants"] == {"canJoin": True, "canSubscribe": True, "canPublish": True, "canPublishData": True}
    assert client.post({"roomName": "general", "participantName": "x"}, headers).status == 403  # voyager net
    old = {"authorization": f"Bearer {sign_user_token(adopted['old_member'])}", "content-type": "application/json"}
    r = client.post({"roomName": "open-mic", "participantName": "x"}, old)
    assert r.status == 200 and r.json["grants"]["canPublish"] is False


def test_a_flare_reaches_an_adopted_medic_through_re_encoded_keys(adopted_env, adopted, push_service, medic_device):
    from functions.notifications.rescue import app
    from tests.integration.notifications.conftest import VapidKeys, _b64url
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    vapid = VapidKeys(_b64url(public), _b64url(key.private_numbers().private_value.to_bytes(32, "big")))
    for k, v in {"NEXUS_ENV": "dev", "NEXT_PUBLIC_VAPID_PUBLIC_KEY": vapid.public, "VAPID_PRIVATE_KEY": vapid.private,
                 "VAPID_SUBJECT": "mailto:ops@nomadnexus.test", "PUSH_RETRY_BASE_SECONDS": "0"}.items():
        adopted_env.setenv(k, v)

    run_fanout()
    assert push_service.payloads_for(medic_device) == []   # adopted history is not pushed

    def launch(sender):
        headers = {"authorization": f"Bearer {sign_user_token(adopted[sender])}", "content-type": "application/json"}
        return Client(app).post({"location": "Stanton III - Crusader", "flareType": "MEDICAL"}, headers)

    # The responder roles are held until an operator confirms them (issue 24): nobody is reached.
    r = launch("twin")
    assert r.status == 202 and r.json["respondersQueued"] == 0 and r.json["devicesReached"] == 0, r
    with psycopg.connect(adopted.url, autocommit=True) as conn:
        done = conn.execute("SELECT public.adoption_hold_settle(%s, true, 'ops', 'known medic')",
                            (adopted["medic"],)).fetchone()[0]
    assert done["settled"] == "confirmed", done
    try:
        r = launch("bidi")
        assert r.status == 202 and r.json["devicesReached"] == 1, r
        assert r.json["respondersQueued"] == 1  # the adopted Medic, confirmed
        payloads = push_service.payloads_for(medic_device)
        assert len(payloads) == 1, payloads
        assert "Crusader" in json.dumps(payloads[0])
    finally:  # the module's other tests see the medic held
        with psycopg.connect(adopted.url, autocommit=True) as conn:
            conn.execute("UPDATE public.profiles SET rank = 'scout', roles = '{Ranger}' WHERE id = %s",
                         (adopted["medic"],))
            conn.execute("UPDATE nexus_adopt.holds SET status = 'pending', settled_at = NULL, audit_id = NULL "
                         "WHERE member_id = %s", (adopted["medic"],))


# -- run twice, interrupted ------------------------------------------------------------

def test_the_chain_run_again_changes_nothing(adopted, reference):
    before = _rows(adopted.url, "SELECT step, rows FROM nexus_adopt.conversions ORDER BY ord")
    assert migrate(adopted.url, log=lambda *_: None) == []
    assert _rows(adopted.url, "SELECT step, rows FROM nexus_adopt.conversions ORDER BY ord") == before
    assert report(adopted.url, reference_url=reference).differences == []


# The adoption is one transaction (issue 24): a folder that stops before the
# conversion is refused with nothing changed, and the whole chain then ends in the contract.
@pytest.mark.parametrize("stop_after", [1, 12])
def test_a_chain_cut_before_the_conversion_is_refused_and_the_whole_one_ends_in_the_contract(
        pg, reference, tmp_path, stop_after):
    name, url = _new_db(pg, "adopt_cut")
    try:
        old = predecessor.build(url)
        partial = tmp_path / "migrations"
        partial.mkdir()
        for f in sorted(MIGRATIONS_DIR.glob("*.sql"))[:stop_after]:
            shutil.copy(f, partial / f.name)
        with pytest.raises(MigrationError, match="stop before"):
            migrate(url, partial, log=lambda *_: None)
        assert _one(url, "SELECT to_regnamespace('nexus_adopt') IS NULL") is True
        migrate(url, log=lambda *_: None)
        assert report(url, reference_url=reference).differences == []
        assert _rows(url, "SELECT rank FROM public.profiles WHERE id = %s", (old["old_member"],)) == [("vagrant",)]
    finally:
        pg.drop_database(name)


# -- PostgreSQL 15 ------------------------------------------------------------------------

def test_adoption_on_postgresql_15(reference):
    binaries = scratch.distro_bin(15)
    if binaries is None:
        why = (f"PostgreSQL 15 server binaries not found at {scratch.DISTRO_BIN.format(major=15)} "
               "(apt-get install postgresql-15)")
        if os.environ.get("CI") == "true":
            pytest.fail(why)  # CI must prove the adoption on PostgreSQL 15, not skip it
        pytest.skip(why)
    with scratch.scratch_server(binaries) as server:
        assert scratch.server_version(server.url) // 10000 == 15
        old = predecessor.build(server.url)
        migrate(server.url, log=lambda *_: None)
        result = report(server.url, reference_url=reference)
        assert result.differences == [] and result.foreign
        with psycopg.connect(server.url) as conn:
            assert catalog.snapshot(conn)["table"]["public.profiles"]["rls_enabled"] is True
        assert _rows(server.url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (old["brig"],)) == [
            ("scout", ["brigged"])]
        assert _rows(server.url, "SELECT p256dh FROM public.push_subscriptions WHERE user_id = %s", (old["medic"],)) == [
            (predecessor.b64url(predecessor.STD_P256DH),)]
        # issue 24's rows on PostgreSQL 15: held powers, guests, cleaned text, every row counted
        assert _rows(server.url, "SELECT rank, roles FROM public.profiles WHERE id = %s", (old["self_rescue"],)) == [
            ("scout", [])]
        assert _rows(server.url, "SELECT rank, callsign FROM public.profiles WHERE id = %s",
                     (old["is_guest_scout"],)) == [("vagrant", None)]
        assert _one(server.url, "SELECT count(*) FROM nexus_adopt.holds WHERE status = 'pending'") == 7
        assert _one(server.url, "SELECT location FROM public.flares WHERE id = %s", (old["flare_blank"],)) == "unknown"
        assert _one(server.url, "SELECT count(*) FROM nexus_adopt.not_adopted "
                                "WHERE reason = 'not explained by any reason above'") == 0


# Only what the adoption recorded is foreign: a table made by hand afterwards,
# or a column added to ours, is drift and fails verify.
def test_an_unrecorded_object_is_still_drift(adopted, reference, capsys):
    with psycopg.connect(adopted.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.hand_made (id int PRIMARY KEY)")
        conn.execute("ALTER TABLE public.voice_nets ADD COLUMN hand_made text")
    try:
        result = report(adopted.url, reference_url=reference)
        drift = {(d.change, d.kind, d.name) for d in result.differences}
        assert ("extra", "table", "public.hand_made") in drift
        assert ("extra", "column", "public.voice_nets.hand_made") in drift
        assert main(["verify", "--url", adopted.url, "--reference", reference]) == 1
        assert "extra    table public.hand_made" in capsys.readouterr().out
    finally:
        with psycopg.connect(adopted.url, autocommit=True) as conn:
            conn.execute("DROP TABLE public.hand_made")
            conn.execute("ALTER TABLE public.voice_nets DROP COLUMN hand_made")
