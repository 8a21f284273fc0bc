"""`nexus smoke`: the runbook's Phase 6 checks against a running stack.

    nexus smoke --base-url http://127.0.0.1:8787/functions/v1     # `make dev`
    nexus smoke --stack-outputs outputs.json [--flare]             # a deployed stack
    nexus smoke --stack-name nomadnexus-prod [--flare]             # the same, read with boto3

Checks, each printed as PASS / FAIL / SKIP with what was seen:
  health         founder's GET: database reachable, migrations current
  6.1 tokens     livekit-token per rank: a scout talks, a vagrant only listens
                 (or is refused), higher ranks get at least a scout's grants; no token is 401;
                 each token is presented to the LiveKit server it names (/rtc/validate), which
                 must accept it (noted, not failed, when no server answers)
  6.2 academy    a scout requests the skill, the guide accepts, the scout joins the pod's room
  6.3 push       the medic subscribes a device; a scout's flare reaches it (on a local stack
                 a loopback receiver decrypts it); the device is unsubscribed again
  6.4 bridging   a founder links two nets, the token for one carries the other, then unlinks
  4.2 webhook    a LiveKit-signed participant_joined / participant_left pair is applied
                 (and read back from voice_presence with a database URL); unsigned is 401;
                 with a database URL, a LiveKit server that answers and the `livekit` client
                 package, a real client joins and leaves and the server's own webhooks must
                 open and close its voice_presence row
  member-admin   refusals answer and write nothing: a scout may not change members, a
                 founder not themselves; on a local stack the founder also gives the
                 vagrant a role and takes it back (two audit rows)

Who the checks act as. Against `make dev` (a loopback URL) the demo members of
nexus/seed.py sign in with tokens made from `.data/dev.env`, which also gives
the LiveKit key pair and the database. Against a deployed stack, from the
environment (see docs/deploy.md, "Smoke-test the stack"):
  SMOKE_TOKEN_<WHO>     access tokens, WHO in VAGRANT SCOUT VOYAGER FOUNDER PIONEER GUIDE MEDIC
                        (or SUPABASE_JWT_SECRET + SUPABASE_URL + SMOKE_USER_<WHO>=<user id>, for
                        projects still on the legacy HS256 secret)
  SMOKE_SKILL_ID        a skill the guide is certified for
  SMOKE_ROOM            a net every rank may join and scouts may talk on (default test-room)
  SMOKE_BRIDGE_NETS     two net ids (uuid,uuid), or two net codes when DATABASE_URL is set
  LIVEKIT_API_KEY, LIVEKIT_API_SECRET   to sign the webhook deliveries
  DATABASE_URL          optional, read only: resolves net codes, reads voice_presence back
The flare pages every medic and rescuer, so against a deployed stack it runs
only with --flare. Anything a check needs and lacks makes it SKIP, not FAIL.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

RANKS = ("vagrant", "scout", "voyager", "founder", "pioneer")
WHO = (*RANKS, "guide", "medic")
FUNCTIONS = ("livekit-token", "livekit-webhook", "net-bridge", "academy-request", "academy-accept",
             "notifications-subscribe", "handle-rescue-request", "health", "member-admin")
# template.yaml's Outputs, as `sam list stack-outputs` or `aws cloudformation describe-stacks` print them.
OUTPUTS = {
    "LiveKitTokenUrl": "livekit-token", "LiveKitWebhookUrl": "livekit-webhook", "NetBridgeUrl": "net-bridge",
    "AcademyRequestUrl": "academy-request", "AcademyAcceptUrl": "academy-accept",
    "NotificationsSubscribeUrl": "notifications-subscribe", "RescueRequestUrl": "handle-rescue-request",
    "HealthUrl": "health", "MemberAdminUrl": "member-admin",
}
TIMEOUT = 15.0


class Skip(Exception):
    """The check cannot run with what it was given."""


class Fail(Exception):
    pass


@dataclass
class Stack:
    urls: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    skill_id: str | None = None
    room: str = "test-room"
    bridge_nets: tuple[str, str] | None = None
    livekit_key: str | None = None
    livekit_secret: str | None = None
    database_url: str | None = None
    local: bool = False  # a loopback stack: push to a local receiver, flare freely


# A JWT (three base64url segments, header starting `{"`): LiveKit and member
# tokens echoed in a response body must not reach a terminal or CI log.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    return _JWT.sub("<token>", text)


@dataclass
class Result:
    status: str  # PASS FAIL SKIP
    name: str
    detail: str

    def __post_init__(self) -> None:
        self.detail = redact(self.detail)


# -- HTTP -------------------------------------------------------------------------------------

def call(stack: Stack, function: str, method: str = "POST", body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = {"content-type": "application/json", **(headers or {})}
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(stack.urls[function], data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            status, out_headers, payload = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        status, out_headers, payload = e.code, dict(e.headers), e.read()
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload[:200].decode("utf-8", "replace")
    return status, out_headers, parsed


def livekit_verdict(server_url: str, token: str) -> int | None:
    """The LiveKit server's own answer to `token` (GET /rtc/validate: 200 it would admit the join,
    401 it refuses the token), or None when the server cannot be reached."""
    from urllib.parse import quote

    url = re.sub(r"^ws(s?)://", r"http\1://", server_url.rstrip("/")) + "/rtc/validate?access_token=" + quote(token)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=TIMEOUT) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _presented(body: dict) -> str:
    """Present a livekit-token answer's token to its server; a note for the check's detail."""
    verdict = livekit_verdict(body["serverUrl"], body["token"])
    if verdict is None:
        return f"; not presented: no LiveKit server answers at {body['serverUrl']}"
    expect(verdict == 200, f"the LiveKit server at {body['serverUrl']} refuses the token ({verdict})")
    return "; the LiveKit server accepts it"


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise Fail(message)


def token_for(stack: Stack, who: str) -> str:
    if who not in stack.tokens:
        raise Skip(f"no token for {who} (SMOKE_TOKEN_{who.upper()})")
    return stack.tokens[who]


# -- checks -----------------------------------------------------------------------------------

def check_health(stack: Stack) -> str:
    status, _, body = call(stack, "health", "GET", token=token_for(stack, "founder"))
    expect(status in (200, 503), f"health answered {status}: {body}")
    parts = body if status == 200 else (body or {}).get("details", {})
    database, contract = parts.get("database", {}), parts.get("contract", {})
    expect(database.get("ok") is True, f"database not ok: {database}")
    expect(contract.get("status") == "current", f"migrations {contract.get('status')}: pending "
                                                 f"{contract.get('pending')}, unknown {contract.get('unknown')}")
    notes = [f"database ok ({database.get('transport')})", f"migrations current ({contract.get('applied')})"]
    if not parts.get("livekit", {}).get("ok"):
        notes.append("LiveKit server not reachable from the function")
    if parts.get("config", {}).get("missing"):
        notes.append(f"missing settings: {', '.join(parts['config']['missing'])}")
    return "; ".join(notes)


def _grants(stack: Stack, who: str, room: str) -> tuple[int, Any]:
    status, _, body = call(stack, "livekit-token", body={"roomName": room, "participantName": f"Smoke-{who}"},
                           token=token_for(stack, who))
    return status, body


def check_token_for(who: str) -> Callable[[Stack], str]:
    def check(stack: Stack) -> str:
        status, body = _grants(stack, who, stack.room)
        if who == "vagrant":
            if status == 403:
                return f"refused on {stack.room} ({body.get('error')})"
            expect(status == 200, f"{status}: {body}")
            expect(body["grants"]["canPublish"] is False, f"a vagrant may publish: {body['grants']}")
            return f"listen-only on {stack.room} (canPublish false)" + _presented(body)
        expect(status == 200, f"{status}: {body}")
        expect(body.get("token") and str(body.get("serverUrl", "")).startswith("ws"), f"no token/serverUrl: {body}")
        if who == "scout":
            expect(body["grants"]["canPublish"] is True, f"a scout may not talk on {stack.room}: {body['grants']}")
        else:
            scout_status, scout = _grants(stack, "scout", stack.room) if "scout" in stack.tokens else (None, None)
            if scout_status == 200:
                fewer = [k for k, v in scout["grants"].items() if v and not body["grants"].get(k)]
                expect(not fewer, f"{who} gets less than a scout: {fewer}")
        return f"grants {', '.join(k for k, v in body['grants'].items() if v)}" + _presented(body)
    return check


def check_no_token(stack: Stack) -> str:
    status, _, body = call(stack, "livekit-token", body={"roomName": stack.room}, token="not-a-token")
    expect(status == 401 and isinstance(body, dict) and body.get("error") == "UNAUTHORIZED", f"{status}: {body}")
    return "401 UNAUTHORIZED"


def check_academy(stack: Stack) -> str:
    if not stack.skill_id:
        raise Skip("no skill (SMOKE_SKILL_ID)")
    guide = token_for(stack, "guide")
    # A cadet whose last request was accepted keeps it open while the pod lives:
    # a repeated run asks as the next member instead.
    attempts = []
    for cadet in [who for who in ("scout", "voyager", "founder", "pioneer", "vagrant") if who in stack.tokens]:
        status, _, body = call(stack, "academy-request", body={"skillId": stack.skill_id}, token=stack.tokens[cadet])
        if status == 201 and body.get("status") == "PENDING":
            request_id = body["requestId"]
            break
        if status == 409 and body.get("details", {}).get("status") == "PENDING":  # left by an interrupted run
            request_id = body["details"]["requestId"]
            break
        if not (status == 409 and body.get("details", {}).get("status") == "ACCEPTED"):
            raise Fail(f"the {cadet}'s request: {status}: {body}")
        attempts.append(cadet)
    else:
        raise Skip(f"{', '.join(attempts) or 'nobody'} already ha{'s' if len(attempts) == 1 else 've'} an accepted "
                   "request whose sim pod is still live (SIM_POD_TTL_SECONDS); run again once they expire")
    status, _, pod = call(stack, "academy-accept", body={"requestId": request_id}, token=guide)
    expect(status == 200, f"accept: {status}: {pod}")
    expect(pod.get("simPodId") and pod.get("connectionTokens") and pod["connectionTokens"][0].get("role") == "guide",
           f"accept answered {pod}")
    status, body = _grants(stack, cadet, pod["roomName"])
    expect(status == 200 and body.get("simPodId") == pod["simPodId"], f"cadet's pod token: {status}: {body}")
    return f"the {cadet}'s request accepted by the guide; both can join {pod['roomName']}"


class PushReceiver:
    """A browser's push subscription on 127.0.0.1 that decrypts what it receives (RFC 8291).

    Only for loopback stacks (dev mode accepts http:// loopback endpoints);
    it stops by itself after `lifetime` seconds.
    """

    def __init__(self, lifetime: float = 120.0):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)
        public = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        self.p256dh, self.auth = _b64url(public), _b64url(self.auth_secret)
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                import http_ece

                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    plain = http_ece.decrypt(body, private_key=receiver.key, auth_secret=receiver.auth_secret,
                                             version="aes128gcm")
                    receiver.received.append({"payload": json.loads(plain),
                                              "vapid": (self.headers.get("authorization") or "").startswith("vapid ")})
                    receiver.arrived.set()
                    self.send_response(201)
                except Exception:
                    self.send_response(400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/push/{uuid.uuid4().hex}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _remote_device() -> dict[str, str]:
    """A well-formed subscription nobody receives (.invalid never resolves); removed at once."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"endpoint": f"https://push.nomadnexus-smoke.invalid/{uuid.uuid4().hex}",
            "p256dh": _b64url(public), "auth": _b64url(os.urandom(16))}


def check_push(stack: Stack, flare: bool) -> list[Result]:
    medic = token_for(stack, "medic")
    receiver = PushReceiver() if stack.local else None
    device = ({"endpoint": receiver.endpoint, "keys": {"p256dh": receiver.p256dh, "auth": receiver.auth},
               "expirationTime": None} if receiver else _remote_device())
    results: list[Result] = []
    try:
        status, _, body = call(stack, "notifications-subscribe", body=device, token=medic)
        if status != 200 or body != {"success": True}:
            return [Result("FAIL", "6.3 subscribe", f"{status}: {body}")]
        results.append(Result("PASS", "6.3 subscribe", "the medic's device is subscribed"))
        if receiver is not None:  # local: the flare must reach this device
            results.append(_flare(stack, receiver))
        # A deployed stack's smoke device is an address nobody receives: it goes before any flare.
        status, _, body = call(stack, "notifications-subscribe", "DELETE", body={"endpoint": device["endpoint"]},
                               token=medic)
        ok = status == 200 and isinstance(body, dict) and body.get("removed") is True
        results.append(Result("PASS" if ok else "FAIL", "6.3 unsubscribe",
                              "the smoke device is removed again" if ok else f"{status}: {body}"))
        if receiver is None:
            results.append(_flare(stack, None) if flare else Result(
                "SKIP", "6.3 flare", "it pages every medic and rescuer on a live stack; add --flare"))
        return results
    finally:
        if receiver is not None:
            receiver.close()


def _flare(stack: Stack, receiver: PushReceiver | None) -> Result:
    # One flare per member per window: a repeated run flies it as the next rank up.
    senders = [who for who in RANKS[1:] if who in stack.tokens]
    if not senders:
        return Result("SKIP", "6.3 flare", "no scout-or-higher token")
    for who in senders:
        status, _, body = call(stack, "handle-rescue-request",
                               body={"location": "Stanton III - Crusader (nexus smoke)", "flareType": "MEDICAL"},
                               token=stack.tokens[who])
        if status != 429:
            break
    else:
        return Result("SKIP", "6.3 flare", f"every sender flew a flare moments ago (rate limited); "
                                           f"retry in {body.get('details', {}).get('retryAfter')} s")
    if status != 202 or body.get("status") != "FLARE_LAUNCHED":
        return Result("FAIL", "6.3 flare", f"{status}: {body}")
    detail = f"flare {body['flareId']} by the {who}: {body['respondersQueued']} responders queued"
    if receiver is None:
        return Result("PASS", "6.3 flare", detail + f", {body['devicesReached']} devices reached")
    if not receiver.arrived.wait(30):
        return Result("FAIL", "6.3 flare", detail + "; nothing reached the medic's device within 30 s")
    got = [r for r in receiver.received if r["payload"].get("data", {}).get("flareId") == body["flareId"]]
    if not got or not got[0]["vapid"] or got[0]["payload"].get("type") != "RESCUE_FLARE":
        return Result("FAIL", "6.3 flare", detail + f"; the device received {receiver.received}")
    return Result("PASS", "6.3 flare", detail + "; the medic's device received and decrypted it")


def check_bridging(stack: Stack) -> str:
    if not stack.bridge_nets:
        raise Skip("no nets to bridge (SMOKE_BRIDGE_NETS)")
    founder = token_for(stack, "founder")
    a, b = stack.bridge_nets
    status, _, bridge = call(stack, "net-bridge", body={"sourceNetId": a, "targetNetId": b, "action": "link"},
                             token=founder)
    expect(status in (200, 201) and bridge.get("id"), f"link: {status}: {bridge}")
    created = status == 201
    try:
        code_a = _net_code(stack, a)
        if code_a:
            status, body = _grants(stack, "founder", code_a)
            expect(status == 200, f"founder's token for {code_a}: {status}: {body}")
            expect(any(x["netId"] == b for x in body.get("bridges", [])), f"no bridged token for {b}: {body}")
    finally:
        if created:  # only a bridge this run made is taken down again
            status, _, body = call(stack, "net-bridge", body={"sourceNetId": a, "targetNetId": b, "action": "unlink"},
                                   token=founder)
            expect(status == 200, f"unlink: {status}: {body}")
    return (f"linked {a} - {b}" + (f", {code_a}'s token carries the bridged net" if code_a else "")
            + (", unlinked again" if created else " (already bridged; left as it was)"))


def _net_code(stack: Stack, net_id: str) -> str | None:
    if not stack.database_url:
        return None
    import psycopg

    with psycopg.connect(stack.database_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT code FROM public.voice_nets WHERE id = %s", (net_id,)).fetchone()
    return row[0] if row else None


def check_webhook(stack: Stack) -> str:
    from nexus.webhook_test import join_and_leave

    if not (stack.livekit_key and stack.livekit_secret):
        raise Skip("no LiveKit key pair (LIVEKIT_API_KEY, LIVEKIT_API_SECRET)")
    status, _, body = call(stack, "livekit-webhook", raw=b'{"event":"participant_joined"}',
                           headers={"authorization": "not-a-signature"})
    expect(status == 401, f"an unsigned delivery got {status}: {body}")
    report = join_and_leave(stack.urls["livekit-webhook"], stack.livekit_key, stack.livekit_secret,
                            room=stack.room, database_url=stack.database_url)
    for d in report.deliveries:
        expect(d.status == 200 and isinstance(d.answer, dict) and d.answer.get("received") is True,
               f"{d.event}: {d.status}: {d.answer}")
        expect(d.answer.get("status") in ("applied", "queued"), f"{d.event}: {d.answer}")
    detail = f"{report.identity} joined and left {stack.room}; unsigned delivery refused"
    if report.presence is not None:
        rows = [(r["joined_at"] is not None, r["left_at"] is not None) for r in report.presence]
        expect(rows == [(True, True)], f"voice_presence row for {report.sid}: {rows}")
        detail += "; voice_presence shows the session open and closed"
        detail += _webhook_through_server(stack)
    return detail


def _webhook_through_server(stack: Stack) -> str:
    """A real join and leave (the `livekit` client) on the stack's LiveKit server; its own
    webhooks must open and close the scout's voice_presence row. Skipped (noted) without the
    client package or a server that answers."""
    try:
        from livekit import rtc
    except ImportError:
        return "; no real join (the `livekit` client package is not installed)"
    if "scout" not in stack.tokens:
        return ""
    status, body = _grants(stack, "scout", stack.room)
    if status != 200 or livekit_verdict(body["serverUrl"], body["token"]) is None:
        return f"; no real join: no LiveKit server answers at {body.get('serverUrl') if status == 200 else '?'}"
    import asyncio

    import psycopg

    def presence(conn, sid: str) -> tuple | None:
        return conn.execute("SELECT left_at IS NULL FROM public.voice_presence WHERE room_name = %s "
                            "AND participant_sid = %s", (stack.room, sid)).fetchone()

    def until(conn, sid: str, want: tuple, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while presence(conn, sid) != want:
            if time.monotonic() > deadline:
                raise Fail(f"the LiveKit server's webhook did not {what} voice_presence for {sid} "
                           f"in {TIMEOUT:.0f} s (is its webhook URL this stack's livekit-webhook?)")
            time.sleep(0.1)

    async def join_and_leave(conn) -> str:
        room = rtc.Room()
        await asyncio.wait_for(room.connect(body["serverUrl"], body["token"]), TIMEOUT)
        sid = room.local_participant.sid
        try:
            await asyncio.to_thread(until, conn, sid, (True,), "open")
        finally:
            await room.disconnect()
        await asyncio.to_thread(until, conn, sid, (False,), "close")
        return sid

    with psycopg.connect(stack.database_url, connect_timeout=5, autocommit=True) as conn:
        try:
            asyncio.run(join_and_leave(conn))
        except (asyncio.TimeoutError, rtc.ConnectError) as e:
            raise Fail(f"a real client could not join {stack.room} on {body['serverUrl']}: {e}") from None
    return "; a real client's join and leave, reported by the LiveKit server's own webhooks, did too"


def _subject(token: str) -> str:
    """The `sub` of a member token (read, not verified: the endpoint verifies it)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


def check_member_admin(stack: Stack) -> str:
    founder, scout, vagrant = (token_for(stack, who) for who in ("founder", "scout", "vagrant"))
    target = _subject(vagrant)
    status, _, body = call(stack, "member-admin", token=scout,
                           body={"userId": target, "addRoles": ["Smoke"], "reason": "nexus smoke"})
    expect(status == 403 and body.get("error") == "INSUFFICIENT_CLEARANCE", f"a scout's change: {status}: {body}")
    status, _, body = call(stack, "member-admin", token=founder,
                           body={"userId": _subject(founder), "rank": "vagrant", "reason": "nexus smoke"})
    expect(status == 403 and body.get("error") == "FORBIDDEN", f"a founder changing themselves: {status}: {body}")
    detail = "a scout's change and a founder's change to themselves refused"
    if not stack.local:
        return detail + " (no change made on a deployed stack)"
    for change in ({"addRoles": ["Smoke"]}, {"removeRoles": ["smoke"]}):
        status, _, body = call(stack, "member-admin", token=founder,
                               body={"userId": target, "reason": "nexus smoke", **change})
        expect(status == 200 and "Smoke" not in body.get("roles", []) if "removeRoles" in change
               else status == 200 and "Smoke" in body.get("roles", []), f"{change}: {status}: {body}")
    return detail + "; the founder gave the vagrant a role and took it back"


# -- running ----------------------------------------------------------------------------------

def run(stack: Stack, *, flare: bool, out: Callable[[str], None] = print) -> list[Result]:
    checks: list[tuple[str, Callable[[Stack], Any]]] = [
        ("health", check_health),
        *[(f"6.1 token {who}", check_token_for(who)) for who in RANKS],
        ("6.1 no token", check_no_token),
        ("6.2 academy", check_academy),
        ("6.3 push", lambda s: check_push(s, flare)),
        ("6.4 bridging", check_bridging),
        ("4.2 webhook presence", check_webhook),
        ("member-admin", check_member_admin),
    ]
    results: list[Result] = []
    for name, check in checks:
        try:
            outcome = check(stack)
            found = outcome if isinstance(outcome, list) else [Result("PASS", name, outcome)]
        except Skip as e:
            found = [Result("SKIP", name, str(e))]
        except Fail as e:
            found = [Result("FAIL", name, str(e))]
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as e:
            found = [Result("FAIL", name, f"{type(e).__name__}: {e}")]
        for r in found:
            out(f"{r.status:<5} {r.name:<22} {r.detail}")
        results.extend(found)
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    out(f"smoke: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return results


# -- where the stack is and who acts in it ----------------------------------------------------

def urls_from_outputs(data: Any) -> dict[str, str]:
    """Function URLs from `sam list stack-outputs --output json` or `aws cloudformation describe-stacks`."""
    if isinstance(data, dict) and "Stacks" in data:
        data = data["Stacks"][0].get("Outputs", [])
    urls = {OUTPUTS[o["OutputKey"]]: o["OutputValue"] for o in data if o.get("OutputKey") in OUTPUTS}
    missing = sorted(set(FUNCTIONS) - set(urls))
    if missing:
        raise SystemExit(f"the stack outputs lack URLs for: {', '.join(missing)}")
    return urls


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def dev_stack(urls: dict[str, str]) -> Stack:
    """`make dev`: the demo members, skill and nets, with the local stack's own keys."""
    from nexus import devenv
    from nexus.seed import DEMO_SKILL_ID

    env = devenv.read_dev_env()
    tokens = {who: devenv.member_token(env, devenv.demo_user_id(who), ttl=900) for who in WHO}
    stack = Stack(urls=urls, tokens=tokens, skill_id=DEMO_SKILL_ID, livekit_key=env.get("LIVEKIT_API_KEY"),
                  livekit_secret=env.get("LIVEKIT_API_SECRET"), database_url=env.get("DATABASE_URL"), local=True)
    stack.bridge_nets = _net_ids(stack.database_url, ("lobby", "ops"))
    return stack


def deployed_stack(urls: dict[str, str], environ: dict[str, str]) -> Stack:
    tokens = {who: environ[f"SMOKE_TOKEN_{who.upper()}"] for who in WHO if environ.get(f"SMOKE_TOKEN_{who.upper()}")}
    jwt_secret, supabase_url = environ.get("SUPABASE_JWT_SECRET"), environ.get("SUPABASE_URL")
    if jwt_secret and supabase_url:
        from nexus.devenv import member_token

        for who in WHO:
            user = environ.get(f"SMOKE_USER_{who.upper()}")
            if user and who not in tokens:
                tokens[who] = member_token({"SUPABASE_URL": supabase_url.rstrip("/"),
                                            "SUPABASE_JWT_SECRET": jwt_secret}, user, ttl=900)
    stack = Stack(urls=urls, tokens=tokens, skill_id=environ.get("SMOKE_SKILL_ID"),
                  room=environ.get("SMOKE_ROOM") or "test-room", livekit_key=environ.get("LIVEKIT_API_KEY"),
                  livekit_secret=environ.get("LIVEKIT_API_SECRET") or environ.get("LIVEKIT_WEBHOOK_SECRET"),
                  database_url=environ.get("DATABASE_URL"), local=all(_is_loopback(u) for u in urls.values()))
    nets = [n.strip() for n in (environ.get("SMOKE_BRIDGE_NETS") or "").split(",") if n.strip()]
    if len(nets) == 2:
        stack.bridge_nets = (nets[0], nets[1]) if all(_is_uuid(n) for n in nets) else \
            _net_ids(stack.database_url, (nets[0], nets[1]))
    return stack


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


def _net_ids(database_url: str | None, codes: tuple[str, str]) -> tuple[str, str] | None:
    if not database_url:
        return None
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = dict(conn.execute("SELECT code, id::text FROM public.voice_nets WHERE code = ANY(%s)",
                                 (list(codes),)).fetchall())
    return (rows[codes[0]], rows[codes[1]]) if len(rows) == 2 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nexus smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="functions at <base>/<name>, e.g. http://127.0.0.1:8787/functions/v1")
    where.add_argument("--stack-outputs", help="JSON from `sam list stack-outputs --output json` "
                                               "or `aws cloudformation describe-stacks`")
    where.add_argument("--stack-name", help="read the outputs of this CloudFormation stack (boto3, AWS credentials)")
    parser.add_argument("--flare", action="store_true", help="launch a real rescue flare on a deployed stack")
    parser.add_argument("--dev", action=argparse.BooleanOptionalAction, default=None,
                        help="act as `make dev`'s demo members (default: when every URL is on loopback)")
    args = parser.parse_args(argv)

    if args.base_url:
        urls = {name: f"{args.base_url.rstrip('/')}/{name}" for name in FUNCTIONS}
    elif args.stack_outputs:
        with open(args.stack_outputs) as f:
            urls = urls_from_outputs(json.load(f))
    else:
        import boto3

        urls = urls_from_outputs(boto3.client("cloudformation").describe_stacks(StackName=args.stack_name))
    dev = args.dev if args.dev is not None else all(_is_loopback(u) for u in urls.values())
    stack = dev_stack(urls) if dev else deployed_stack(urls, dict(os.environ))
    results = run(stack, flare=args.flare)
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
