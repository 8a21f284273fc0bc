"""Where the auth server's binary is missing, the shim makes `auth.users`; it must have the
real table's shape, so tests without the server still meet production's (a NULL
raw_user_meta_data, a user without email). This holds the two equal, column by column."""

from __future__ import annotations

import uuid

import psycopg

from nexus import auth_server
from nexus.migrate import prepare_platform

COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'auth.users'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
KEYS = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = 'auth.users'::regclass AND (i.indisprimary OR i.indisunique) AND i.indpred IS NULL
   OR i.indexrelid = to_regclass('auth.users_email_partial_key')
ORDER BY 1
"""


def _catalog(url: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(url) as conn:
        return conn.execute(COLUMNS).fetchall(), conn.execute(KEYS).fetchall()


def test_the_shims_auth_users_is_the_auth_servers(pg, auth_binary):
    names = [f"shape_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("server", "shim")]
    urls = [pg.create_database(n) for n in names]
    try:
        prepare_platform(urls[0], auth_binary=auth_binary)
        prepare_platform(urls[1], auth_binary=None)
        assert auth_server.made_by_auth_server(urls[0]) is True
        assert auth_server.made_by_auth_server(urls[1]) is False
        real, shim = _catalog(urls[0]), _catalog(urls[1])
        assert len(real[0]) == 35
        assert shim == real
    finally:
        for n in names:
            pg.drop_database(n)
