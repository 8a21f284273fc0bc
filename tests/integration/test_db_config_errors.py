"""A malformed database setting is a configuration error that names the variable, never its value.

libpq quotes a connection string it cannot parse (password included), and
httpx quotes a header it cannot send (the service role key): either used to
reach the logs on every request. Each case here asks livekit-token for a
token with the setting broken and reads everything logged, tracebacks too.
"""

from __future__ import annotations

import io
import logging

import pytest

from shared import auth, config, db
from tests import support
from tests.support import Client

SECRET = "S3CRET"


@pytest.fixture
def logs():
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))  # tracebacks included
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def token_app():
    from functions.livekit_token.app import app

    return Client(app)


def reconfigure() -> None:
    config.get_settings.cache_clear()
    auth.reset_for_tests()
    db.set_database(None)


def assert_config_error(reply, logs, variable: str) -> None:
    logged = logs.getvalue()
    assert SECRET not in logged and SECRET not in reply.raw.decode()
    assert reply.status == 500, reply
    assert reply.json == {"error": "INTERNAL", "message": "The service is not configured correctly."}
    assert f"Invalid configuration: {variable}" in logged


# Given a DATABASE_URL libpq cannot use as written (a password with a blank or an
# unencoded "@", an unknown parameter, a broken IPv6 literal, a bad port), when a member
# asks for a token, then the answer is the configuration 500 and no log line holds the
# password, not even a fragment of it.
@pytest.mark.parametrize("url", [
    f"postgresql://postgres:{SECRET} PW@127.0.0.1:5432/nexus",
    f"postgresql://postgres:pw@{SECRET}@127.0.0.1:5432/nexus",
    f"postgresql://postgres:{SECRET}@127.0.0.1:5432/nexus?no_such_option=1",
    f"postgresql://postgres:{SECRET}@[::1/nexus",
    f"postgresql://postgres:pw/{SECRET}@127.0.0.1:5432/nexus",
    f"host=127.0.0.1 password={SECRET} stray",
], ids=["blank", "at-sign", "unknown-option", "ipv6", "slash", "keyword-garbage"])
def test_malformed_database_url_is_a_config_error_without_the_password(env, sql, token_app, logs, url):
    member, room = sql.member("scout"), sql.net()
    env.setenv("DATABASE_URL", url)
    reconfigure()
    assert_config_error(token_app.post({"roomName": room}, member.auth()), logs, "DATABASE_URL")


# Given a well-formed DATABASE_URL whose password is wrong, then it is a 503 outage as
# before, and libpq's reason is logged without the password.
def test_wrong_password_is_unavailable_and_not_logged(env, sql, token_app, logs, database_url):
    from urllib.parse import urlsplit

    member, room = sql.member("scout"), sql.net()
    port = urlsplit(database_url).port
    env.setenv("DATABASE_URL", f"postgresql://nobody:{SECRET}@127.0.0.1:{port}/nexus_test")
    reconfigure()
    reply = token_app.post({"roomName": room}, member.auth())
    assert reply.status == 503, reply
    assert SECRET not in logs.getvalue()


def use_rpc(env, url: str, key: str) -> None:
    env.delenv("DATABASE_URL", raising=False)
    env.setenv("SUPABASE_URL", url)
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", key)
    env.setenv("SUPABASE_JWT_ISSUER", support.ISSUER)  # tokens name the real project
    reconfigure()


# Given the RPC transport with a SUPABASE_URL httpx or supabase-py cannot use, or a service
# role key no HTTP header can carry (a pasted newline, a blank, a non-ASCII character),
# then the answer is the configuration 500 naming the variable, and the key is not logged.
@pytest.mark.parametrize("variable,url,key", [
    ("SUPABASE_URL", "https://exa mple.supabase.co", f"{SECRET}-key"),
    ("SUPABASE_URL", "http://[::1", f"{SECRET}-key"),
    ("SUPABASE_URL", "ftp://project.supabase.co", f"{SECRET}-key"),
    ("SUPABASE_URL", "https://project.supabase.co:99999", f"{SECRET}-key"),
    ("SUPABASE_URL", "project.supabase.co", f"{SECRET}-key"),
    ("SUPABASE_SERVICE_ROLE_KEY", "https://project.supabase.co", f"{SECRET}-key\n"),
    ("SUPABASE_SERVICE_ROLE_KEY", "https://project.supabase.co", f"{SECRET} key"),
    ("SUPABASE_SERVICE_ROLE_KEY", "https://project.supabase.co", f"{SECRET}-k\u00e9y"),
], ids=["blank-url", "ipv6-url", "ftp-url", "port-url", "no-scheme", "newline-key", "blank-key", "non-ascii-key"])
def test_malformed_supabase_settings_are_config_errors_without_the_key(env, sql, token_app, logs, variable, url, key):
    member, room = sql.member("scout"), sql.net()
    use_rpc(env, url, key)
    assert_config_error(token_app.post({"roomName": room}, member.auth()), logs, variable)
