"""`make dev` end to end: the runbook's curl for livekit-token works against it.

Runs `nexus dev` as a real subprocess with its own data directory and ports,
so it never touches a developer's `.data/` stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEXUS = [sys.executable, "-m", "nexus"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("devstack")
    port, pg_port = _free_port(), _free_port()
    env = {**os.environ, "NEXUS_DATA_DIR": str(data)}
    for key in list(env):
        if key.startswith(("LIVEKIT_", "SUPABASE_", "VAPID_")) or key == "DATABASE_URL":
            env.pop(key)
    log = open(data / "dev.log", "wb")
    proc = subprocess.Popen([*NEXUS, "dev", "--port", str(port), "--pg-port", str(pg_port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/functions/v1"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"nexus dev exited:\n{(data / 'dev.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{base}/nope", timeout=1)
            except urllib.error.HTTPError:
                break  # the gateway answers (404 for an unknown function)
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("nexus dev did not come up in 90 s")
        yield {"base": base, "env": env, "data": data}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _token(stack, rank: str) -> str:
    out = subprocess.run([*NEXUS, "token", "--rank", rank], cwd=ROOT, env=stack["env"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _post(url: str, token: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_dev_env_names_what_clients_need(dev_stack):
    lines = (dev_stack["data"] / "dev.env").read_text().splitlines()
    keys = {line.split("=", 1)[0] for line in lines}
    assert {"DATABASE_URL", "FUNCTIONS_URL", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET",
            "NEXT_PUBLIC_VAPID_PUBLIC_KEY"} <= keys


def test_token_command_prints_only_a_token(dev_stack):
    token = _token(dev_stack, "scout")
    assert token.count(".") == 2 and " " not in token and "\n" not in token


def test_runbook_phase_3_2_and_6_1_curl(dev_stack):
    url = f"{dev_stack['base']}/livekit-token"
    status, body = _post(url, _token(dev_stack, "scout"), {"roomName": "test-room", "participantName": "Scout1"})
    assert status == 200, body
    assert body["token"] and body["serverUrl"].startswith("ws")
    assert body["grants"]["canPublish"] is True
    status, body = _post(url, _token(dev_stack, "vagrant"), {"roomName": "test-room", "participantName": "Vagrant1"})
    assert status == 200 and body["grants"]["canPublish"] is False
    status, body = _post(url, "not-a-jwt", {"roomName": "test-room", "participantName": "X"})
    assert status == 401 and body["error"] == "UNAUTHORIZED"
