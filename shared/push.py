"""Sending one Web Push message: VAPID (RFC 8292), aes128gcm (RFC 8291), RFC 8030 headers.

The predecessor looped over `webpush()`, which opens a new connection and
signs a new VAPID JWT for every message and has no timeout. Here:

- one pooled `requests.Session` per container (keep-alive per push service),
  no proxies from the environment, and a hard deadline on every send, not
  just per-read timeouts (shared/push_transport.py);
- the VAPID `Authorization` header cached per push-service origin: the JWT
  lives 12 h (services refuse more than 24 h) and is renewed once half of that
  has passed, so a header in use always has hours left whatever the clocks;
- `TTL`, `Urgency` and a `Topic` (the notification id) so a resend of the
  same notification replaces, rather than duplicates, what the device shows;
- the plaintext payload kept at most 3 KB;
- outside dev mode, a connection to a non-public address or a port other
  than 443 is refused at the socket, whatever DNS said when the member
  subscribed.

pywebpush's `WebPusher` does the encryption; the POST is ours, since
`WebPusher.send()` reads (and formats) the whole answer.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

import requests
from py_vapid import Vapid
from py_vapid.utils import b64urlencode
from pywebpush import WebPusher, WebPushException

from shared.config import ConfigError
from shared.push_transport import BlockedAddress, DeadlineExceeded, post
from shared.push_transport import make_session as make_session  # the fan-out builds its session from here

MAX_PAYLOAD_BYTES = 3072
VAPID_LIFETIME_SECONDS = 12 * 3600
VAPID_RENEW_AFTER_SECONDS = VAPID_LIFETIME_SECONDS // 2

Outcome = Literal["sent", "gone", "retry", "failed"]


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True)
class PushMessage:
    payload: bytes
    ttl: int
    urgency: str
    topic: str


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


# --- what we send ----------------------------------------------------------

def build_payload(notification: dict[str, Any]) -> bytes:
    """The JSON the service worker receives, at most MAX_PAYLOAD_BYTES.

    Too long: the message is shortened, then the title; a producer payload
    so big it leaves no room for the text is dropped (the app can fetch the
    notification by id). `truncated` tells the service worker.
    """
    doc: dict[str, Any] = {
        "id": notification["id"],
        "type": notification["type"],
        "title": notification["title"],
        "body": notification.get("message") or "",
        "data": notification.get("payload") or {},
        "createdAt": notification.get("createdAt"),
    }
    raw = _dump(doc)
    if len(raw) <= MAX_PAYLOAD_BYTES:
        return raw
    doc["truncated"] = True
    if len(_dump({**doc, "title": "", "body": ""})) > MAX_PAYLOAD_BYTES - 512:
        doc["data"] = {}
    for field in ("body", "title"):
        raw = _dump(doc)
        while len(raw) > MAX_PAYLOAD_BYTES and doc[field]:
            # dropping `excess` characters drops at least `excess` bytes
            doc[field] = doc[field][: max(0, len(doc[field]) - (len(raw) - MAX_PAYLOAD_BYTES))]
            raw = _dump(doc)
    return raw


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def topic_for(notification_id: str) -> str:
    # RFC 8030 §5.4: at most 32 characters of the URL-safe base64 alphabet;
    # a UUID's hex digits are exactly 32.
    return notification_id.replace("-", "")[:32]


# --- outcome of an HTTP answer ----------------------------------------------

# Retry-After longer than this is taken as this (a day); the backoff caps it further.
RETRY_AFTER_MAX_SECONDS = 86400.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,32}", re.ASCII)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    Whatever a push service sends, this returns a number or None (the default
    backoff) and never raises: only ASCII digits count as delta-seconds
    ("²".isdigit() is true and float("²") raises), a huge value is capped,
    and a date that cannot be placed on the clock is ignored.
    """
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), RETRY_AFTER_MAX_SECONDS)
    if not value.isascii() or value[:1].isdigit():
        return None  # non-ASCII, too many digits, a fraction: neither delta-seconds nor an HTTP date
    try:
        when = email.utils.parsedate_to_datetime(value)
        delta = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None
    if delta != delta:  # NaN
        return None
    return min(max(0.0, delta), RETRY_AFTER_MAX_SECONDS)


def classify(status: int, retry_after: str | None, reason: str) -> PushResult:
    if status in (200, 201, 202):
        return PushResult("sent", status)
    if status in (404, 410):
        return PushResult("gone", status, f"{status} {reason}".strip())
    if status == 429 or status >= 500 or status == 408:
        return PushResult("retry", status, f"{status} {reason}".strip(), parse_retry_after(retry_after))
    return PushResult("failed", status, f"{status} {reason}".strip())


def retry_delay(attempts: int, retry_after: float | None, base: float, cap: float,
                jitter: Callable[[], float] | None = None) -> float:
    """Exponential backoff from `base`, capped, never sooner than Retry-After."""
    backoff = min(cap, base * (2 ** max(0, attempts - 1)))
    if jitter is not None:
        backoff *= 0.5 + 0.5 * jitter()  # spread retries of one burst apart
    return max(backoff, min(retry_after, cap) if retry_after is not None else 0.0)


# --- VAPID -----------------------------------------------------------------

def push_service_origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"https": 443, "http": 80}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def load_vapid_key(private_key: str, expected_public_key: str | None = None) -> Vapid:
    """The VAPID key from VAPID_PRIVATE_KEY: raw base64url (what `web-push
    generate-vapid-keys` prints), base64 DER, or PEM. If the public key the
    browsers subscribed with is configured, it must belong to this key."""
    try:
        if "-----BEGIN" in private_key:
            key = Vapid.from_pem(private_key.strip().encode())
        else:
            key = Vapid.from_string(private_key.strip())
    except Exception:
        raise ConfigError("Invalid configuration: VAPID_PRIVATE_KEY") from None
    if expected_public_key:
        from cryptography.hazmat.primitives import serialization

        ours = b64urlencode(key.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
        if ours != expected_public_key.strip().rstrip("="):
            raise ConfigError("Invalid configuration: NEXT_PUBLIC_VAPID_PUBLIC_KEY does not match VAPID_PRIVATE_KEY")
    return key


class VapidHeaderCache:
    """`Authorization: vapid t=<JWT>,k=<public key>` per push-service origin."""

    def __init__(self, key: Vapid, subject: str, *, clock: Callable[[], float] = time.time):
        self.key = key
        self.subject = subject
        self.clock = clock
        self._headers: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def header(self, endpoint: str) -> str:
        origin = push_service_origin(endpoint)
        now = self.clock()
        cached = self._headers.get(origin)
        if cached is not None and now < cached[1]:
            return cached[0]
        with self._lock:
            cached = self._headers.get(origin)
            if cached is not None and now < cached[1]:
                return cached[0]
            claims = {"aud": origin, "exp": int(now) + VAPID_LIFETIME_SECONDS, "sub": self.subject}
            value = self.key.sign(claims)["Authorization"]
            self._headers[origin] = (value, now + VAPID_RENEW_AFTER_SECONDS)
            return value


# --- sending ------------------------------------------------------------------

class PushSender:
    """Thread-safe: one per container, shared by the sending threads."""

    def __init__(self, vapid: VapidHeaderCache, session: requests.Session, *,
                 connect_timeout: float, read_timeout: float):
        self.vapid = vapid
        self.session = session
        self.timeout = (connect_timeout, read_timeout)

    def send(self, subscription: Subscription, message: PushMessage,
             timeout: tuple[float, float] | None = None, deadline: float | None = None) -> PushResult:
        """One push, over by `deadline` (monotonic; default: both timeouts from now) whatever the service does."""
        if len(message.payload) > MAX_PAYLOAD_BYTES:
            return PushResult("failed", None, "payload larger than 3 KB")
        timeout = timeout or self.timeout
        if deadline is None:
            deadline = time.monotonic() + sum(timeout)
        info = {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}
        try:
            body = WebPusher(info).encode(message.payload, "aes128gcm")["body"]
        except (WebPushException, ValueError, TypeError) as e:
            # Keys that pass validation but cannot be used; retrying will not help.
            return PushResult("failed", None, f"cannot encrypt for this subscription: {type(e).__name__}")
        headers = {
            "Authorization": self.vapid.header(subscription.endpoint),
            "TTL": str(message.ttl),
            "Urgency": message.urgency,
            "Topic": message.topic,
            "Content-Encoding": "aes128gcm",
        }
        try:
            answer = post(self.session, subscription.endpoint, data=body, headers=headers, timeout=timeout,
                          deadline=deadline)
        except (DeadlineExceeded, requests.Timeout):
            return PushResult("retry", None, "timeout")
        except requests.ConnectionError as e:
            reason = getattr(e.args[0], "reason", None) if e.args else None
            if isinstance(reason, BlockedAddress):
                return PushResult("failed", None, f"endpoint not allowed: {reason.message}")
            return PushResult("retry", None, "connection failed")
        except requests.RequestException as e:
            return PushResult("retry", None, f"request failed: {type(e).__name__}")
        return classify(answer.status, answer.retry_after, answer.reason)
