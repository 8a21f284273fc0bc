"""health sees drift, not only versions (issue 13).

A database of its own, migrated as usual; the shipped fingerprint is
computed from a fresh replay of the migrations (`nexus db fingerprint`,
what `make package` ships). Then objects are changed by hand the way an
operator might (RLS disabled, a policy added, a grant, a function's
security) and health must say `drift`, name the class, degrade, and point
at `nexus db verify`; what is not ours (a frontend's own table in public)
must not count. PostgreSQL 15 and the embedded 18 must fingerprint the
replayed migrations alike.
"""

from __future__ import annotations

import psycopg
import pytest

from nexus.dbtools import fingerprint, scratch
from tests import support
from tests.integration.test_health import SERVICE_KEY, get, livekit_server  # noqa: F401


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """What `make package` puts in health's bundle: the fingerprint of a fresh replay."""
    return fingerprint.write(fingerprint.from_replay(), tmp_path_factory.mktemp("bundle") / fingerprint.FILE_NAME)


@pytest.fixture
def drift_db(pg):
    with support.migrated_database(pg, "nexus_drift") as url:
        yield url


@pytest.fixture
def health(env, livekit_server, drift_db, shipped):  # noqa: F811
    from shared import config, db

    env.setenv("DATABASE_URL", drift_db)
    env.setenv("LIVEKIT_URL", livekit_server.url.replace("http://", "ws://"))
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
    env.setenv("CONTRACT_FINGERPRINT_FILE", str(shipped))
    config.get_settings.cache_clear()
    db.set_database(None)
    from functions.health import app as module

    yield module
    db.set_database(None)


def by_hand(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def test_a_database_as_migrated_matches(health):
    reply = get(health, SERVICE_KEY)
    assert reply.status == 200, reply
    contract = reply.json["contract"]
    assert contract["status"] == "current" and contract["fingerprint"] == "match"
    assert "drift" not in contract


@pytest.mark.parametrize("change,cls", [
    ("ALTER TABLE public.voice_presence DISABLE ROW LEVEL SECURITY", "rls"),
    ("CREATE POLICY everyone_reads ON public.profiles FOR SELECT TO anon USING (true)", "policies"),
    ("GRANT INSERT ON public.voice_presence TO anon", "grants"),
    ("ALTER FUNCTION public.health_snapshot(uuid, jsonb) SECURITY INVOKER", "functions"),
    ("ALTER TABLE public.profiles ADD COLUMN nickname text", "tables"),
    ("ALTER TABLE nexus_private.livekit_webhook_jobs ALTER COLUMN last_error SET DEFAULT 'none'", "tables"),
    # the audit's guards (issue 24): a trigger dropped, disabled, or no longer ALWAYS
    ("DROP TRIGGER admin_audit_no_truncate ON public.admin_audit", "triggers"),
    ("ALTER TABLE public.admin_audit DISABLE TRIGGER admin_audit_append_only", "triggers"),
    ("ALTER TABLE public.admin_audit ENABLE TRIGGER admin_audit_append_only", "triggers"),
    ("ALTER TABLE auth.users DISABLE TRIGGER on_auth_user_created", "triggers"),
    ("GRANT INSERT ON public.admin_audit TO service_role", "grants"),
])
def test_a_change_by_hand_is_drift_naming_its_class(health, drift_db, change, cls):
    # Given a database at the shipped versions, when an object of ours is changed by hand...
    by_hand(drift_db, change)
    reply = get(health, SERVICE_KEY)
    # ...then health still answers 200, but the contract is drift, naming the class, and the report is degraded
    assert reply.status == 200, reply
    contract = reply.json["contract"]
    assert contract["status"] == "drift" and contract["ok"] is False
    assert contract["drift"] == [cls]
    assert contract["fingerprint"] == "differs"
    assert "nexus db verify" in contract["verify"]
    assert reply.json["status"] == "degraded"


def test_objects_not_ours_are_ignored(health, drift_db):
    # A frontend's own table in public, without RLS, with grants, and a function of its own.
    by_hand(drift_db, "CREATE TABLE public.frontend_notes (id int PRIMARY KEY, body text)")
    by_hand(drift_db, "GRANT ALL ON public.frontend_notes TO anon, authenticated")
    by_hand(drift_db, "CREATE FUNCTION public.frontend_hello() RETURNS text LANGUAGE sql AS $$ SELECT 'hi' $$")
    by_hand(drift_db, "CREATE SCHEMA IF NOT EXISTS analytics")
    by_hand(drift_db, "CREATE TABLE analytics.events (id int)")
    contract = get(health, SERVICE_KEY).json["contract"]
    assert contract["status"] == "current" and contract["fingerprint"] == "match"


def test_without_a_fingerprint_for_these_migrations_drift_is_unchecked(health, env, tmp_path):
    import json

    from shared import config

    with open(config.get_settings().CONTRACT_FINGERPRINT_FILE) as f:
        stale = json.load(f)
    stale["versions"] = stale["versions"][:-1]  # computed before the latest migration
    stale["classes"]["rls"] = "0" * 32
    (tmp_path / "old.json").write_text(json.dumps(stale))
    env.setenv("CONTRACT_FINGERPRINT_FILE", str(tmp_path / "old.json"))
    config.get_settings.cache_clear()
    contract = get(health, SERVICE_KEY).json["contract"]
    assert contract["status"] == "current" and contract["fingerprint"] == "unchecked"


def test_postgresql_15_and_the_embedded_server_fingerprint_the_migrations_alike(shipped):
    import json

    bin15 = scratch.distro_bin(15)
    if bin15 is None:
        pytest.skip("PostgreSQL 15 server binaries are not installed (/usr/lib/postgresql/15/bin)")
    assert fingerprint.from_replay(bin_path=bin15)["classes"] == json.loads(shipped.read_text())["classes"]
