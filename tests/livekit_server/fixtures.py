"""Fixtures for tests against the real livekit-server (loaded by conftest.py inside the namespace).

- `livekit`: one server per session on free ports, with the suite's key pair (tests/support.py)
  and its webhook pointed at `functions` (the local gateway serving every function).
- `functions`: the gateway (nexus/gateway.py) on a free port in this process, so webhooks the
  server sends reach the real livekit-webhook handler and the session's PostgreSQL.
- `lk_env`: the `env` fixture with LIVEKIT_URL set to the real server (autouse here).
- `lk_call(coro)`: run a client coroutine (clients.py) on a fresh event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from nexus.livekit_server import LiveKitServer, ServerUnavailable, ensure_binary, free_port
from tests import support


@pytest.fixture(scope="session")
def livekit_binary() -> Path:
    given = os.environ.get("NEXUS_LIVEKIT_SERVER_BIN")
    if given:
        return Path(given)
    try:
        return ensure_binary(build=False)
    except ServerUnavailable as e:
        pytest.fail(str(e))


class FunctionsServer:
    """The local gateway (every function at /functions/v1/<name>) served by uvicorn in a thread."""

    def __init__(self, port: int):
        self.port = port
        self.base = f"http://127.0.0.1:{port}/functions/v1"
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/livekit-webhook"

    def start(self) -> "FunctionsServer":
        import uvicorn

        from nexus.gateway import Gateway

        config = uvicorn.Config(Gateway(), host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="functions", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 120  # a guard against hanging only
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the functions gateway did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def functions_port() -> int:
    return free_port()


def serving(binary: Path, webhook_port: int):
    """A started livekit-server with the suite's key pair, its webhooks to livekit-webhook on
    127.0.0.1:`webhook_port` (the functions, or a proxy in front of them); stopped after."""
    server = LiveKitServer(support.LIVEKIT_KEY, support.LIVEKIT_SECRET, binary=binary,
                           webhook_urls=[f"http://127.0.0.1:{webhook_port}/functions/v1/livekit-webhook"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def livekit(livekit_binary, functions_port):
    """The session's livekit-server; its webhooks go to the session's functions."""
    yield from serving(livekit_binary, functions_port)


@pytest.fixture(scope="session")
def base_env(base_env, livekit):
    """tests/conftest.py's settings, with the real server's URL."""
    return {**base_env, "LIVEKIT_URL": livekit.url}


@pytest.fixture(scope="session")
def functions(functions_port, base_env):
    server = FunctionsServer(functions_port).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def lk_env(env, functions, livekit):
    """Every test here runs configured like a deployed function, against the real server."""
    if not livekit.ready():
        pytest.fail(f"livekit-server is not answering:\n{livekit.log_tail()}")
    return env


@pytest.fixture
def lk_call():
    def run(coro, timeout: float = 60.0):
        return asyncio.run(asyncio.wait_for(coro, timeout))
    return run
