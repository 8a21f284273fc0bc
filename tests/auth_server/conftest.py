"""Tests against Supabase's real auth server (GoTrue v2.188.0), started once per session on a
free 127.0.0.1 port against the session's test database (which its own migrations prepared).

Without its binary (nexus/auth_server.py says where we look) these are skipped with one line
saying so; with CI=true they fail, as the LiveKit server's tests do.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from nexus import auth_server
from tests import support

PASSWORD = "correct-horse-battery-7"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


_SKIPPED = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def auth_binary(request):
    found = auth_server.find_binary()
    if found is None:
        message = auth_server.how_to_get()
        if _in_ci():
            pytest.fail(f"CI=true and the auth server is missing: {message}", pytrace=False)
        request.config.stash.setdefault(_SKIPPED, []).append(message)
        pytest.skip(message)
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reasons = config.stash.get(_SKIPPED, [])
    if reasons:
        terminalreporter.write_line(f"!!!!! REAL AUTH SERVER TESTS SKIPPED: {reasons[0]} "
                                    "(with CI=true this is a failure) !!!!!", red=True, bold=True)


@dataclass
class Session:
    user_id: str
    access_token: str
    refresh_token: str
    body: dict

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}", "content-type": "application/json"}


class Auth:
    """The auth server's HTTP API as supabase-js calls it (anon key as `apikey`), and its admin API."""

    def __init__(self, server: auth_server.AuthServer):
        self.server = server
        self.anon_key = auth_server.service_role_key(server.jwt_secret, server.issuer, "anon")
        self.service_key = auth_server.service_role_key(server.jwt_secret, server.issuer)

    @property
    def jwks_url(self) -> str:
        return f"{self.server.url}/.well-known/jwks.json"

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return auth_server.call(self.server.url, method, path, body, token=token, apikey=self.anon_key)

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return auth_server.call(self.server.url, method, path, body, apikey=self.service_key)

    @staticmethod
    def _session(status: int, body: Any) -> Session:
        assert status == 200, (status, body)
        return Session(body["user"]["id"], body["access_token"], body["refresh_token"], body)

    def sign_up(self, email: str | None = None, password: str = PASSWORD, **data: Any) -> Session:
        email = email or f"{uuid.uuid4().hex[:12]}@example.test"
        return self._session(*self.call("POST", "/signup", {"email": email, "password": password, "data": data}))

    def sign_in(self, email: str, password: str = PASSWORD) -> Session:
        return self._session(*self.call("POST", "/token?grant_type=password", {"email": email, "password": password}))

    def refresh(self, refresh_token: str) -> tuple[int, Any]:
        return self.call("POST", "/token?grant_type=refresh_token", {"refresh_token": refresh_token})

    def anonymous(self) -> Session:
        return self._session(*self.call("POST", "/signup", {"data": {}}))

    def create_user(self, callsign: str | None = None) -> str:
        """A confirmed member made through the admin API (as `make dev` seeds them)."""
        status, body = self.admin("POST", "/admin/users", {
            "email": f"{uuid.uuid4().hex[:12]}@example.test", "password": PASSWORD, "email_confirm": True,
            "user_metadata": {"callsign": callsign} if callsign else {}})
        assert status == 200, (status, body)
        return body["id"]

    def delete_user(self, user_id: str, *, soft: bool) -> tuple[int, Any]:
        return self.admin("DELETE", f"/admin/users/{user_id}", {"should_soft_delete": soft})


@pytest.fixture(scope="session")
def auth_server_process(auth_binary, database_url):
    assert auth_server.made_by_auth_server(database_url) is True, "the test database's auth is not the server's"
    server = auth_server.AuthServer(database_url, support.JWT_SECRET, auth_server.new_signing_jwk(),
                                    external_url=support.ISSUER, binary=auth_binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def auth(auth_server_process) -> Auth:
    return Auth(auth_server_process)


def use_jwks(env, jwks_url: str) -> None:
    """Configure the functions as a project with asymmetric keys: verification through the JWKS."""
    from shared import auth as shared_auth, config

    env.setenv("SUPABASE_JWKS_URL", jwks_url)
    config.get_settings.cache_clear()
    shared_auth.reset_for_tests()


@pytest.fixture
def functions_env(env, auth):
    """The functions configured as a deployment whose tokens come from this auth server
    (with push configured, so handle-rescue-request answers on its merits)."""
    from nexus.devenv import _vapid_keypair

    public, private = _vapid_keypair()
    env.setenv("NEXT_PUBLIC_VAPID_PUBLIC_KEY", public)
    env.setenv("VAPID_PRIVATE_KEY", private)
    env.setenv("VAPID_SUBJECT", "mailto:ops@nomadnexus.test")
    use_jwks(env, auth.jwks_url)
    return env


def call_function(name: str, body: Any, headers: dict[str, str], method: str = "POST") -> support.Reply:
    from nexus import registry

    return support.Client(registry.load(registry.HTTP_FUNCTIONS[name])).request(method, body, headers)
