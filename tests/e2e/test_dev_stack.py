"""`make dev` end to end: the runbook's curl for livekit-token works against it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.e2e.devstack import demo_token, running_dev_stack

@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory):
    with running_dev_stack(tmp_path_factory.mktemp("devstack")) as stack:
        yield stack


def _token(stack, rank: str) -> str:
    return demo_token(stack, "--rank", rank)


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
