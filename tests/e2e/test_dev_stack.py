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


# Given a machine without Go and without a built livekit-server, when `make dev` starts, then it
# still serves, says in one line how to get a server, and health says why LiveKit is unreachable.
def test_without_go_dev_runs_and_says_how_to_get_livekit(tmp_path):
    from nexus.livekit_server import HOW_TO_GET

    with running_dev_stack(tmp_path, livekit=True,
                           extra_env={"NEXUS_GO": "none", "NEXUS_CACHE_DIR": str(tmp_path / "cache")}) as stack:
        lines = [line for line in stack["log"].read_text().splitlines() if line.startswith("LiveKit:")]
        assert lines == [f"LiveKit: not started: no Go toolchain found: {HOW_TO_GET}"]
        req = urllib.request.Request(f"{stack['base']}/health",
                                     headers={"Authorization": f"Bearer {_token(stack, 'founder')}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            health = json.loads(resp.read())
        url = stack["dev"]["LIVEKIT_URL"].replace("ws://", "http://")
        assert health["livekit"] == {"ok": False, "error": "unreachable", "reason": f"{url}/: Connection refused"}
        assert health["status"] == "degraded"
