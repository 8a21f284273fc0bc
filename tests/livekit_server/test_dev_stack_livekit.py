"""`make dev` with its livekit-server: health ok, the runbook's 6.1 token joins a real room,
`nexus smoke` presents its tokens to the server, and stopping the stack stops the server."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.e2e.devstack import NEXUS, ROOT, demo_token, running_dev_stack
from tests.livekit_server.clients import joined


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory):
    with running_dev_stack(tmp_path_factory.mktemp("dev-livekit"), livekit=True) as stack:
        yield stack
    # stopping `make dev` stopped its server too
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(stack["dev"]["LIVEKIT_URL"].replace("ws://", "http://") + "/", timeout=2)


def _post(url: str, token: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def test_dev_starts_livekit_and_health_is_ok(dev_stack):
    lines = [line for line in dev_stack["log"].read_text().splitlines() if line.startswith("LiveKit:")]
    assert len(lines) == 1 and dev_stack["dev"]["LIVEKIT_URL"] in lines[0], lines
    req = urllib.request.Request(f"{dev_stack['base']}/health",
                                 headers={"Authorization": f"Bearer {demo_token(dev_stack, '--rank', 'founder')}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        health = json.loads(resp.read())
    assert health["livekit"]["ok"] is True and health["livekit"]["httpStatus"] == 200
    assert health["status"] == "ok", health


# Given `make dev`, when a scout runs the runbook's 6.1 curl, then the token it gets joins a
# real room on the stack's server and its microphone reaches another member's client.
def test_runbook_curl_token_joins_a_real_room(dev_stack, lk_call):
    url = f"{dev_stack['base']}/livekit-token"
    _, scout = _post(url, demo_token(dev_stack, "--rank", "scout"), {"roomName": "test-room", "participantName": "Scout1"})
    _, voyager = _post(url, demo_token(dev_stack, "--rank", "voyager"), {"roomName": "test-room", "participantName": "V"})
    assert scout["serverUrl"] == dev_stack["dev"]["LIVEKIT_URL"]

    async def scenario():
        async with joined(scout["serverUrl"], scout["token"]) as s, joined(voyager["serverUrl"], voyager["token"]) as v:
            assert s.room.name == "test-room" and s.identity == scout["identity"]
            await s.publish_microphone()
            return await v.wait_audio(scout["identity"])

    assert lk_call(scenario()) > 0


def test_smoke_token_checks_go_through_the_real_server(dev_stack):
    done = subprocess.run([*NEXUS, "smoke", "--base-url", dev_stack["base"]], cwd=ROOT, env=dev_stack["env"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    token_lines = [line for line in done.stdout.splitlines() if line.split()[1:3][:1] == ["6.1"]
                   and "token" in line and "no token" not in line]
    assert len(token_lines) == 5, done.stdout
    for line in token_lines:
        assert line.startswith("PASS") and line.endswith("the LiveKit server accepts it"), line
    webhook = [line for line in done.stdout.splitlines() if "4.2 webhook" in line]
    assert len(webhook) == 1 and webhook[0].startswith("PASS"), done.stdout
    assert webhook[0].endswith("reported by the LiveKit server's own webhooks, did too"), webhook
