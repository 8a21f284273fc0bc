"""`make dev`'s functions verify the auth server's tokens through its JWKS at
$SUPABASE_URL/auth/v1/.well-known/jwks.json, which is the gateway they run in. A burst of calls
at a cold start (a frontend's first page load) must not leave the JWKS fetch queued behind the
very calls waiting for it: before, every call then answered 503 until the fetch timed out."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from nexus.livekit_server import free_port
from tests.auth_server.conftest import use_jwks


@pytest.fixture
def gateway_url(auth, functions_env):
    import uvicorn

    from nexus import registry
    from nexus.gateway import Gateway

    port = free_port()
    gateway = Gateway({"livekit-token": registry.HTTP_FUNCTIONS["livekit-token"]}, auth_upstream=auth.server.url)
    server = uvicorn.Server(uvicorn.Config(gateway, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a guard against hanging only
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    use_jwks(functions_env, f"{url}/auth/v1/.well-known/jwks.json")
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def test_a_burst_of_calls_at_cold_start_verifies_through_the_gateways_jwks(auth, sql, gateway_url):
    net = sql.net("vagrant", "vagrant", "vagrant")
    session = auth.sign_up(f"{uuid.uuid4().hex[:12]}@example.test")
    # More calls at once than the gateway's default worker threads.
    n = min(32, (os.cpu_count() or 1) + 4) + 4
    gate = threading.Barrier(n)
    statuses: list[int] = []

    def one():
        req = urllib.request.Request(f"{gateway_url}/functions/v1/livekit-token", method="POST",
                                     data=json.dumps({"roomName": net}).encode(),
                                     headers={"authorization": f"Bearer {session.access_token}",
                                              "content-type": "application/json"})
        gate.wait()
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                statuses.append(resp.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert statuses == [200] * n
