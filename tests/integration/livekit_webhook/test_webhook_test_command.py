"""`nexus webhook test --url ...` (runbook 4.2 in one command) against the real livekit-webhook function.

The function is served over loopback HTTP (its ASGI app, as the gateway
serves it) on the test database; the command signs its deliveries with the
key pair from the environment and reads voice_presence with DATABASE_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys

from shared.http import call_asgi
from tests import support
from tests.peers.loopback import LoopbackServer, QuietHandler


class _FunctionHandler(QuietHandler):
    def do_POST(self) -> None:
        from functions.livekit_webhook.app import app

        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out, body = call_asgi(app, "POST", "/", headers, self.read_body())
        self.reply(status, body, out.get("content-type", "application/json"))


class WebhookFunction(LoopbackServer):
    handler_class = _FunctionHandler


def run_command(extra_env: dict[str, str], *argv: str) -> tuple[int, str]:
    """`nexus ...` as an operator runs it: its own process and environment (not the function's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "DATABASE_URL"))}
    out = subprocess.run([sys.executable, "-m", "nexus", *argv], env={**env, **extra_env}, capture_output=True,
                         text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr


def test_signed_join_and_leave_are_reported_with_the_presence_rows(env, sql):
    with WebhookFunction() as function:
        code, out = run_command({"LIVEKIT_API_KEY": support.LIVEKIT_KEY, "LIVEKIT_API_SECRET": support.LIVEKIT_SECRET,
                                 "DATABASE_URL": os.environ["DATABASE_URL"]}, "webhook", "test", "--url", function.url)
    assert code == 0, out
    assert "participant_joined  -> 200" in out and "participant_left    -> 200" in out
    assert '"status": "applied"' in out
    assert "voice_presence: joined" in out and ", left None" not in out
    assert out.splitlines()[-1].startswith("PASS")
    assert support.LIVEKIT_SECRET not in out
    # The rows it reported are really there: one session, opened and closed, for a throwaway identity.
    identity = out.splitlines()[0].split("identity ")[1].split(" ")[0]
    rows = sql.execute("SELECT left_at IS NOT NULL FROM public.voice_presence WHERE participant_identity = %s", (identity,))
    assert rows == [(True,)]


def test_a_key_pair_the_function_does_not_know_is_reported_as_401(env):
    with WebhookFunction() as function:
        code, out = run_command({"LIVEKIT_API_KEY": support.LIVEKIT_KEY,
                                 "LIVEKIT_API_SECRET": "not-the-functions-secret-0123456789abcdef"},
                                "webhook", "test", "--url", function.url)
    assert code == 1
    assert "participant_joined  -> 401" in out and "not accepted" in out
    assert "not read (set DATABASE_URL" in out
    assert out.splitlines()[-1].startswith("FAIL")
