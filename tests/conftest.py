"""One embedded PostgreSQL per test session, migrated with the real migrations."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests import support

# Every AWS call our code makes is held against its role in template.yaml (tests/aws_calls.py).
pytest_plugins = ("tests.aws_calls",)


@pytest.fixture(scope="session")
def pg():
    from nexus.pg import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="nexus-test-pg-"))
    server = EmbeddedPostgres(root / "data", fast=True)
    server.start()
    try:
        yield server
    finally:
        server.destroy()
        try:
            root.rmdir()
        except OSError:
            pass


@pytest.fixture(scope="session")
def database_url(pg) -> str:
    from nexus.migrate import prepare_local

    url = pg.create_database("nexus_test")
    prepare_local(url, log=lambda *_: None)
    return url


@pytest.fixture(scope="session")
def base_env(database_url):
    return {
        "NEXUS_ENV": "production",
        "DATABASE_URL": database_url,
        "SUPABASE_URL": support.SUPABASE_URL,
        "SUPABASE_JWT_SECRET": support.JWT_SECRET,
        # Tests verify HS256 by default; JWKS tests configure their own URL.
        "SUPABASE_JWKS_URL": "off",
        "LIVEKIT_URL": support.LIVEKIT_URL,
        "LIVEKIT_API_KEY": support.LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": support.LIVEKIT_SECRET,
    }


def _reset_process_state() -> None:
    from shared import auth, config, db

    config.get_settings.cache_clear()
    auth.reset_for_tests()
    db.set_database(None)


@pytest.fixture
def env(base_env, monkeypatch):
    """Configure the process like a deployed function; undo afterwards."""
    for key in list(os.environ):
        if key in base_env or key.startswith(("LIVEKIT_", "SUPABASE_", "VAPID_", "NEXT_PUBLIC_")):
            monkeypatch.delenv(key, raising=False)
    for k, v in base_env.items():
        monkeypatch.setenv(k, v)
    _reset_process_state()
    yield monkeypatch
    _reset_process_state()


@pytest.fixture(scope="session")
def sql(database_url):
    d = support.Db(database_url)
    yield d
    d.close()
