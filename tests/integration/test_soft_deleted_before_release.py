"""Users the auth server soft-deleted (deleted_at set) before our soft-delete trigger existed:
in a predecessor's database we adopt, and so in any project where a member was soft-deleted
before this release. They count as deleted, so after `nexus db migrate` they hold no profile
(and their rows in the predecessor's record go with it), while members beside them keep theirs."""

from __future__ import annotations

import uuid

import psycopg

from nexus.dbtools import main
from tests import predecessor


def test_soft_deleted_users_of_an_adopted_database_get_no_profile(pg):
    name = f"adopt_soft_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    try:
        old = predecessor.build(url)
        ids: dict[str, str] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            predecessor._user(conn, ids, "soft_deleted", profile={"rank": "voyager", "callsign": "Departed"})
            predecessor._user(conn, ids, "soft_deleted_no_profile", profile=None)
            conn.execute("UPDATE auth.users SET deleted_at = now() WHERE id IN (%s, %s)",
                         (ids["soft_deleted"], ids["soft_deleted_no_profile"]))
        assert main(["migrate", "--url", url]) == 0
        with psycopg.connect(url) as conn:
            held = conn.execute("SELECT count(*) FROM public.profiles WHERE id IN (%s, %s)",
                                (ids["soft_deleted"], ids["soft_deleted_no_profile"])).fetchone()[0]
            kept = conn.execute("SELECT count(*) FROM public.profiles WHERE id = %s", (old["scout"],)).fetchone()[0]
            record = conn.execute("SELECT count(*) FROM nexus_adopt.profiles WHERE id = %s",
                                  (ids["soft_deleted"],)).fetchone()[0]
        assert (held, kept, record) == (0, 1, 0)
    finally:
        pg.drop_database(name)
