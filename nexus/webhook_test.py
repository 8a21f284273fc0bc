"""`nexus webhook test`: the runbook's 4.2 (test webhook delivery) in one command.

    nexus webhook test --url https://<id>.lambda-url.<region>.on.aws/
    nexus webhook test --url http://127.0.0.1:8787/functions/v1/livekit-webhook    # make dev

Sends what LiveKit would send for a throwaway identity: a participant_joined
and then a participant_left, each signed as LiveKit signs deliveries (an
HS256 JWT from the API key pair whose `sha256` claim is the body's hash),
and prints what the function answered to each. With DATABASE_URL set (read
only) it also prints the identity's voice_presence rows, which should show
the session opened and closed. Exit status 0 when both deliveries were
accepted (and, with a database, the row is closed), 1 otherwise.

The key pair comes from LIVEKIT_API_KEY and LIVEKIT_API_SECRET (or
LIVEKIT_WEBHOOK_SECRET), or, for a loopback URL, from `make dev`'s
.data/dev.env. The secret is never printed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

TIMEOUT = 15.0


@dataclass
class Delivery:
    event: str
    status: int
    answer: Any

    @property
    def accepted(self) -> bool:
        return (self.status == 200 and isinstance(self.answer, dict) and self.answer.get("received") is True
                and self.answer.get("status") in ("applied", "queued", "duplicate"))


@dataclass
class Report:
    room: str
    identity: str
    sid: str
    deliveries: list[Delivery] = field(default_factory=list)
    presence: list[dict[str, Any]] | None = None  # None: no database to read

    @property
    def ok(self) -> bool:
        if len(self.deliveries) != 2 or not all(d.accepted for d in self.deliveries):
            return False
        return self.presence is None or (len(self.presence) == 1 and self.presence[0]["left_at"] is not None)


def sign(body: bytes, api_key: str, api_secret: str) -> str:
    """LiveKit's webhook signature over exactly these bytes."""
    import jwt

    now = int(time.time())
    return jwt.encode({"iss": api_key, "nbf": now - 5, "exp": now + 300,
                       "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()},
                      api_secret, algorithm="HS256")


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload[:200].decode("utf-8", "replace")


def join_and_leave(url: str, api_key: str, api_secret: str, *, room: str | None = None,
                   database_url: str | None = None) -> Report:
    """Deliver a signed join and leave for a throwaway identity; read its presence back if a database is given."""
    tag = secrets.token_hex(6)
    report = Report(room=room or f"nexus-webhook-test-{tag}", identity=f"nexus-webhook-test-{tag}",
                    sid=f"PA_whtest{tag}")
    room_sid, joined = f"RM_whtest{tag}", int(time.time())
    for kind, at in (("participant_joined", joined), ("participant_left", joined + 1)):
        participant = {"sid": report.sid, "identity": report.identity, "name": "nexus webhook test",
                       "joinedAt": str(joined), "metadata": "",
                       "state": "ACTIVE" if kind == "participant_joined" else "DISCONNECTED"}
        event = {"event": kind, "id": f"EV_whtest{tag}{kind[12:15]}", "createdAt": str(at),
                 "room": {"sid": room_sid, "name": report.room}, "participant": participant}
        body = json.dumps(event, separators=(",", ":")).encode()
        status, answer = post(url, body, {"content-type": "application/webhook+json",
                                          "authorization": sign(body, api_key, api_secret)})
        report.deliveries.append(Delivery(kind, status, answer))
    if database_url:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(database_url, connect_timeout=5, row_factory=dict_row) as conn:
            report.presence = conn.execute(
                "SELECT room_name, participant_identity, participant_sid, joined_at, left_at, left_reason "
                "FROM public.voice_presence WHERE room_name = %s AND participant_sid = %s",
                (report.room, report.sid)).fetchall()
    return report


def describe(report: Report) -> list[str]:
    lines = [f"room {report.room}, identity {report.identity} ({report.sid})"]
    for d in report.deliveries:
        lines.append(f"  {d.event:<19} -> {d.status} {json.dumps(d.answer, default=str)}"
                     + ("" if d.accepted else "   <- not accepted"))
    if report.presence is None:
        lines.append("  voice_presence: not read (set DATABASE_URL to read it)")
    elif not report.presence:
        lines.append("  voice_presence: no row (the events were not applied to this database)")
    for row in report.presence or []:
        lines.append(f"  voice_presence: joined {row['joined_at']}, left {row['left_at']} ({row['left_reason']})")
    lines.append("PASS: LiveKit's deliveries reach the function and are applied" if report.ok else
                 "FAIL: see the answers above (401: the key pair differs from the function's; "
                 "5xx: see the function's log)")
    return lines


def _key_pair(url: str, environ: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    key = environ.get("LIVEKIT_API_KEY")
    secret = environ.get("LIVEKIT_API_SECRET") or environ.get("LIVEKIT_WEBHOOK_SECRET")
    database_url = environ.get("DATABASE_URL")
    if not (key and secret) and (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1"):
        from nexus import devenv

        try:
            dev = devenv.read_dev_env()
        except (OSError, ValueError):
            dev = {}
        key, secret = dev.get("LIVEKIT_API_KEY"), dev.get("LIVEKIT_API_SECRET")
        database_url = database_url or dev.get("DATABASE_URL")
    return key, secret, database_url


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="nexus webhook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="send a signed join and leave and report the answers")
    test.add_argument("--url", required=True, help="the livekit-webhook function's URL")
    test.add_argument("--room", help="room name (default: a throwaway nexus-webhook-test-<tag>)")
    args = parser.parse_args(argv)
    key, secret, database_url = _key_pair(args.url, dict(os.environ))
    if not (key and secret):
        out("LIVEKIT_API_KEY and LIVEKIT_API_SECRET are needed to sign the deliveries")
        return 2
    try:
        report = join_and_leave(args.url, key, secret, room=args.room, database_url=database_url)
    except (urllib.error.URLError, OSError) as e:
        out(f"FAIL: {args.url} could not be reached ({getattr(e, 'reason', e)})")
        return 1
    for line in describe(report):
        out(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
