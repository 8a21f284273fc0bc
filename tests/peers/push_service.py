"""A Web Push service on 127.0.0.1 that checks what a real one checks.

Each simulated browser (`new_device()`) holds its own P-256 key pair and auth
secret, as `PushManager.subscribe()` creates them, and gets an endpoint
`<origin>/push/<device id>`. For every POST the service:

- verifies the VAPID `Authorization: vapid t=<JWT>,k=<key>` (RFC 8292): ES256
  signature under `k`, `k` equal to the application server key the device
  subscribed with (if set), `aud` equal to this service's origin, `exp` in
  the future and at most 24 h away, `sub` present; refuses with 401/403;
- checks the RFC 8030 headers (TTL required, Urgency and Topic well formed)
  and `Content-Encoding: aes128gcm`, body at most 4096 bytes;
- decrypts the body (RFC 8291) with the device's private key and auth secret,
  and records the plaintext with its headers and claims;
- answers what the test scripted for that device: a queue of statuses
  (201, 404, 410, 429 + Retry-After, 5xx, or a delay to provoke timeouts),
  then 201 once the script is used up; or a trickled answer, one byte at a
  time, as a hostile or broken service would send it.

Run standalone for the bench: `python -m tests.peers.push_service` prints its
origin; POST /_devices {"count": n} registers devices, POST /_latency
{"seconds": s} delays every answer (a real service is tens of ms away), GET
/_stats counts and POST /_reset clears the counts.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from http.server import ThreadingHTTPServer

from tests.peers.loopback import LoopbackServer, QuietHandler


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    @property
    def p256dh(self) -> str:
        return b64url(self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def subscription_json(self) -> dict[str, Any]:
        """What the browser's PushSubscription.toJSON() gives the frontend."""
        return {"endpoint": self.endpoint, "expirationTime": None, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass
class Received:
    device_id: str
    payload: Any
    headers: dict[str, str]
    claims: dict[str, Any]
    at: float = field(default_factory=time.time)


@dataclass
class Reply:
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # > 0: answer one byte every `trickle` seconds for up to `trickle_for`
    # seconds, in the headers (the answer never completes) or, after whole
    # headers announcing a large body, in the body. A client that hangs up
    # is recorded in `hung_up`. The push is not recorded as received.
    trickle: float = 0.0
    trickle_in: str = "headers"
    trickle_for: float = 30.0
    # set: answer only once this event is set (or the service stops), whatever the time
    until: threading.Event | None = None


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a fan-out opening 16
    # connections at once would see SYNs dropped and 1 s connect stalls that
    # no real push service causes.
    request_queue_size = 256
    daemon_threads = True


class PushService(LoopbackServer):
    def __init__(self, *, lifetime: float = 120.0, application_server_key: str | None = None,
                 latency: float = 0.0):
        super().__init__(lifetime=lifetime)
        self.application_server_key = application_server_key
        self.latency = latency
        self.devices: dict[str, Device] = {}
        self.received: list[Received] = []
        self.rejected: list[tuple[str, int, str]] = []  # (device id, status, reason)
        self.requests = 0
        self.connections = 0  # TCP connections accepted (keep-alive reuse shows here)
        self.hung_up: list[tuple[str, float]] = []  # (device id, seconds into a trickled answer)
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()

    def start(self) -> "PushService":
        # LoopbackServer.start with a deeper listen backlog (see _Server).
        handler = type("Handler", (self.handler_class,), {"peer": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    # --- arranging ---------------------------------------------------------

    def new_device(self) -> Device:
        device_id = uuid.uuid4().hex
        device = Device(device_id, f"{self.url}/push/{device_id}",
                        ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        with self._lock:
            self.devices[device_id] = device
        return device

    def script(self, device: Device, *replies: int | Reply) -> None:
        """The next answers for this device, in order; 201 afterwards."""
        with self._lock:
            self._scripts.setdefault(device.id, []).extend(
                r if isinstance(r, Reply) else Reply(r) for r in replies)

    # --- asserting ---------------------------------------------------------

    def payloads_for(self, device: Device) -> list[Any]:
        with self._lock:
            return [r.payload for r in self.received if r.device_id == device.id]

    def received_by(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for r in self.received:
                out[r.device_id] = out.get(r.device_id, 0) + 1
            return out

    # --- the protocol ------------------------------------------------------

    def _next_reply(self, device_id: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(device_id)
            return queue.pop(0) if queue else Reply(201)

    def handle_push(self, device_id: str, headers: dict[str, str],
                    body: bytes) -> tuple[int, dict[str, str], str] | Reply:
        """The answer, or the Reply itself when it is to be trickled."""
        with self._lock:
            self.requests += 1
            device = self.devices.get(device_id)
        if device is None:
            return 404, {}, "no such subscription"
        try:
            claims = self._verify_vapid(headers.get("authorization", ""))
            self._check_headers(headers, body)
            plaintext = http_ece.decrypt(body, private_key=device.private_key, auth_secret=device.auth_secret,
                                         version="aes128gcm")
        except _Refused as e:
            with self._lock:
                self.rejected.append((device_id, e.status, e.reason))
            return e.status, {}, e.reason
        except Exception as e:  # undecryptable: what a browser would drop
            with self._lock:
                self.rejected.append((device_id, 400, f"decrypt failed: {type(e).__name__}"))
            return 400, {}, "decryption failed"

        reply = self._next_reply(device_id)
        if reply.trickle:
            return reply
        if reply.delay:
            time.sleep(reply.delay)
        while reply.until is not None and not reply.until.wait(0.1) and self._server is not None:
            pass
        if self.latency:
            time.sleep(self.latency)
        if reply.status in (200, 201, 202):
            try:
                payload: Any = json.loads(plaintext)
            except ValueError:
                payload = plaintext
            with self._lock:
                self.received.append(Received(device_id, payload, dict(headers), claims))
            return reply.status, {"Location": f"{self.url}/message/{uuid.uuid4().hex}", **reply.headers}, ""
        return reply.status, reply.headers, "scripted"

    def _verify_vapid(self, authorization: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, "missing vapid authorization")
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        token, key = parts.get("t", ""), parts.get("k", "")
        if self.application_server_key and key != self.application_server_key:
            raise _Refused(403, "k is not the key this subscription was created with")
        try:
            header_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(sig_b64)
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        except ValueError:
            raise _Refused(401, "malformed vapid token") from None
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise _Refused(401, "vapid token must be ES256")
        try:
            public_key.verify(
                encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")),
                f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise _Refused(401, "bad vapid signature") from None
        now = time.time()
        if claims.get("aud") != self.url:
            raise _Refused(401, f"aud must be {self.url}")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now or exp > now + 24 * 3600:
            raise _Refused(401, "exp must be in the future and within 24 hours")
        if not claims.get("sub"):
            raise _Refused(401, "sub is required")
        return claims

    @staticmethod
    def _check_headers(headers: dict[str, str], body: bytes) -> None:
        ttl = headers.get("ttl")
        if ttl is None or not ttl.isdigit():
            raise _Refused(400, "TTL header required")
        if headers.get("urgency", "normal") not in ("very-low", "low", "normal", "high"):
            raise _Refused(400, "bad Urgency")
        topic = headers.get("topic")
        if topic is not None and (len(topic) > 32 or not all(c.isalnum() or c in "-_" for c in topic)):
            raise _Refused(400, "bad Topic")
        if headers.get("content-encoding") != "aes128gcm":
            raise _Refused(415, "aes128gcm required")
        if len(body) > 4096:
            raise _Refused(413, "payload too large")

    # --- bench control (standalone use) -------------------------------------

    def control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], str]:
        if method == "POST" and path == "/_devices":
            count = int(json.loads(body or b"{}").get("count", 1))
            devices = [self.new_device() for _ in range(count)]
            return 200, {}, json.dumps([{"id": d.id, **d.subscription_json()} for d in devices])
        if method == "GET" and path == "/_stats":
            with self._lock:
                stats = {"requests": self.requests, "received": len(self.received), "rejected": len(self.rejected)}
            return 200, {}, json.dumps(stats)
        if method == "POST" and path == "/_latency":
            self.latency = float(json.loads(body or b"{}").get("seconds", 0.0))
            return 200, {}, "{}"
        if method == "POST" and path == "/_reset":
            with self._lock:
                self.received.clear()
                self.rejected.clear()
                self.requests = 0
            return 200, {}, "{}"
        return 404, {}, "not found"


class _Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Handler(QuietHandler):
    peer: PushService

    def setup(self) -> None:
        super().setup()
        with self.peer._lock:
            self.peer.connections += 1

    def do_POST(self) -> None:
        body = self.read_body()
        if self.path.startswith("/push/"):
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = self.peer.handle_push(self.path[len("/push/"):], headers, body)
            if isinstance(answer, Reply):
                self._trickle(self.path[len("/push/"):], answer)
                return
            status, extra, text = answer
        else:
            status, extra, text = self.peer.control("POST", self.path, body)
        self.reply(status, text.encode(), "text/plain", extra)

    def _trickle(self, device_id: str, reply: Reply) -> None:
        self.close_connection = True
        started = time.monotonic()
        head = f"HTTP/1.1 {reply.status} Created\r\n"
        head += "X-Pad: " if reply.trickle_in == "headers" else "Content-Length: 1000000\r\n\r\n"
        try:
            self.wfile.write(head.encode())
            while time.monotonic() - started < reply.trickle_for and self.peer._server is not None:
                time.sleep(reply.trickle)
                self.wfile.write(b"a")
        except OSError:  # the client gave up on us
            with self.peer._lock:
                self.peer.hung_up.append((device_id, time.monotonic() - started))

    def do_GET(self) -> None:
        status, extra, text = self.peer.control("GET", self.path, b"")
        self.reply(status, text.encode(), "application/json", extra)


PushService.handler_class = _Handler


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every push answer")
    parser.add_argument("--lifetime", type=float, default=600.0)
    parser.add_argument("--application-server-key", default=None)
    args = parser.parse_args()
    service = PushService(lifetime=args.lifetime, latency=args.latency,
                          application_server_key=args.application_server_key).start()
    print(service.url, flush=True)
    deadline = time.monotonic() + args.lifetime
    while service._server is not None and time.monotonic() < deadline:
        time.sleep(0.2)


if __name__ == "__main__":
    main()
