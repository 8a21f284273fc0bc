"""`nexus db migrate` refuses Supabase's transaction pooler (port 6543) unless told otherwise.

The runner holds a session advisory lock; through a transaction pooler the
lock and its unlock can land on different server connections. A loopback TCP
proxy listening on 127.0.0.1:6543 stands in for the pooler's address in front
of a real, empty database, so the override visibly migrates it.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg
import pytest

from nexus import migrate
from nexus.dbtools import main
from tests.peers.tcp_proxy import TcpProxy

PASSWORD = "S3CRET"


@pytest.fixture
def fresh(pg):
    name = f"pooler_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    yield url
    pg.drop_database(name)


@pytest.fixture
def on_6543(fresh):
    """The fresh database's URL as if it were the transaction pooler's: port 6543, a password."""
    try:
        proxy = TcpProxy(urlsplit(fresh).port, listen_port=6543)
    except OSError:
        pytest.skip("127.0.0.1:6543 is taken on this machine")
    with proxy:
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:6543{urlsplit(fresh).path}"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def applied(url: str) -> int | None:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations')").fetchone()[0] is None:
            return None
        return conn.execute("SELECT count(*) FROM supabase_migrations.schema_migrations").fetchone()[0]


# Given DATABASE_URL on port 6543 (production's transaction pooler), when an operator runs
# `nexus db migrate`, then it exits 2 before touching the database, says to use port 5432 or
# the override, and prints no password.
def test_migrate_refuses_the_transaction_pooler_port(fresh, on_6543, capsys, monkeypatch):
    for argv in (("migrate", "--with-shim", "--url", on_6543), ("migrate",)):
        monkeypatch.setenv("DATABASE_URL", on_6543)
        code, out = run(capsys, *argv)
        assert code == 2, out
        assert "transaction pooler" in out and "5432" in out and "--allow-transaction-pooler" in out
        assert PASSWORD not in out
    assert applied(fresh) is None


# Given the same URL and --allow-transaction-pooler (the server on 6543 is a plain
# PostgreSQL), when migrate runs, then it applies every migration.
def test_override_flag_migrates(fresh, on_6543, capsys):
    code, out = run(capsys, "migrate", "--with-shim", "--allow-transaction-pooler", "--url", on_6543)
    assert code == 0, out
    assert applied(fresh) == len(migrate.discover())


# The runner itself refuses too, whoever calls it.
def test_runner_refuses_without_the_override(fresh, on_6543):
    with pytest.raises(migrate.MigrationError, match="transaction pooler"):
        migrate.migrate(on_6543, log=lambda *_: None)
    assert applied(fresh) is None


# Given a session-pooler URL (the pooler host, port 5432), then the check lets it through.
def test_session_pooler_and_direct_urls_pass_the_check():
    for url in ("postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
                "postgresql://postgres:pw@db.ref.supabase.co/postgres",
                "host=db.ref.supabase.co port=5432 dbname=postgres"):
        migrate.check_session_url(url)
    with pytest.raises(migrate.MigrationError, match="transaction pooler"):
        migrate.check_session_url("postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres")


# Given a URL libpq cannot parse (a blank in the password), then migrate exits 2 naming the
# problem without echoing the URL (libpq's own error would print the password).
def test_malformed_url_is_refused_without_the_password(capsys):
    code, out = run(capsys, "migrate", "--url", f"postgresql://postgres:{PASSWORD} PW@127.0.0.1:5432/x")
    assert code == 2, out
    assert "not a valid connection string" in out and PASSWORD not in out

