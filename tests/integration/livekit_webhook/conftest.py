"""Fixtures for the LiveKit webhook pipeline suites.

`hook` calls the real livekit-webhook app on the session database. Suites whose
code acts on every row in the database (the retry worker claims any due job,
the reconciler asks about every stale room) get a database of their own in
the same cluster, `private_db`, so they neither see nor change other tests' rows.
"""

from __future__ import annotations

import uuid

import pytest

from tests import support
from tests.support import Client


@pytest.fixture
def hook(env):
    from functions.livekit_webhook.app import app

    return Client(app)


@pytest.fixture
def room():
    """A room name no other test uses."""
    return f"net-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def private_database(pg):
    with support.migrated_database(pg, "nexus_lk") as url:
        yield url


@pytest.fixture
def private_env(env, private_database):
    """`env`, with the functions pointed at this module's own database."""
    from shared import config, db

    env.setenv("DATABASE_URL", private_database)
    config.get_settings.cache_clear()
    db.set_database(None)
    yield env
    db.set_database(None)


@pytest.fixture(scope="module")
def private_sql(private_database):
    d = support.Db(private_database)
    yield d
    d.close()
