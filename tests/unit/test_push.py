"""The pure parts of Web Push: endpoint rules, payload size, retry timing,
Retry-After parsing, and the VAPID header cache."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from shared.config import ConfigError
from shared.push import (
    MAX_PAYLOAD_BYTES,
    VAPID_LIFETIME_SECONDS,
    VapidHeaderCache,
    build_payload,
    classify,
    load_vapid_key,
    parse_retry_after,
    push_service_origin,
    retry_delay,
    topic_for,
)
from shared.push_subscriptions import InvalidSubscription, validate_endpoint


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _keypair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return _b64url(public), _b64url(key.private_numbers().private_value.to_bytes(32, "big"))


@pytest.mark.parametrize("endpoint", [
    "https://fcm.googleapis.com/fcm/send/abc:def",
    "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
    "https://web.push.apple.com/QGz",
    "https://wns2-by3p.notify.windows.com/w/?token=BQYAAA",
    "https://8.8.8.8/push",
    "https://push.example.com:8443/x",
])
def test_public_https_endpoints_are_accepted(endpoint):
    assert validate_endpoint(endpoint, dev_mode=False) == endpoint


@pytest.mark.parametrize("endpoint", [
    "https://0177.0.0.1/", "https://127.1/", "https://0/", "https://[::]/", "https://[fc00::1]/",
    "https://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
    "https://224.0.0.1/", "https://255.255.255.255/", "https://192.0.2.1/", "https://router.lan/",
    "https://a..b/", "https://-bad.example/", "https://example.123/", "https://fcm.googleapis.com/#frag",
    "https://fcm.googleapis.com:0/", "https://fcm.googleapis.com:99999/", "https://fcm.googleapis.com/ space",
    "https://fcm.googleapis.com/\u00e9", "//fcm.googleapis.com/", "fcm.googleapis.com/x", "https:///x",
])
def test_unsafe_or_malformed_endpoints_are_refused(endpoint):
    with pytest.raises(InvalidSubscription):
        validate_endpoint(endpoint, dev_mode=False)


@given(st.text(max_size=200))
def test_endpoint_validation_never_raises_anything_else(text):
    try:
        validate_endpoint(text, dev_mode=False)
    except InvalidSubscription:
        pass


def test_payload_stays_under_3kb_and_keeps_what_matters():
    note = {"id": "5f0c6a5e-0000-4000-8000-000000000001", "type": "RESCUE_FLARE", "title": "T" * 200,
            "message": "€" * 1000, "payload": {"flareId": "f1"}, "createdAt": "2025-12-10T00:00:00Z"}
    raw = build_payload(note)
    assert len(raw) <= MAX_PAYLOAD_BYTES
    doc = json.loads(raw)
    assert doc["data"] == {"flareId": "f1"} and doc["truncated"] is True and doc["id"] == note["id"]

    huge = dict(note, message="short", payload={"blob": "x" * 5000})
    doc = json.loads(build_payload(huge))
    assert doc["data"] == {} and doc["body"] == "short"


@given(title=st.text(min_size=1, max_size=200), message=st.text(max_size=1000),
       payload=st.dictionaries(st.text(max_size=20), st.text(max_size=300), max_size=12))
def test_payload_is_never_over_3kb(title, message, payload):
    raw = build_payload({"id": "x", "type": "T", "title": title, "message": message, "payload": payload})
    assert len(raw) <= MAX_PAYLOAD_BYTES
    json.loads(raw)


def test_topic_is_32_url_safe_characters():
    assert topic_for("5f0c6a5e-1234-4abc-8def-0123456789ab") == "5f0c6a5e12344abc8def0123456789ab"


@pytest.mark.parametrize("status,outcome", [(201, "sent"), (202, "sent"), (404, "gone"), (410, "gone"),
                                            (429, "retry"), (500, "retry"), (503, "retry"), (400, "failed"),
                                            (401, "failed"), (403, "failed"), (413, "failed")])
def test_answers_are_classified(status, outcome):
    assert classify(status, None, "").outcome == outcome


def test_retry_after_seconds_and_dates():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 10 Dec 2025 00:01:00 GMT", now=1765324800.0) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_doubles_is_capped_and_never_undercuts_retry_after():
    assert [retry_delay(n, None, 15, 3600) for n in (1, 2, 3)] == [15, 30, 60]
    assert retry_delay(20, None, 15, 3600) == 3600
    assert retry_delay(1, 300, 15, 3600) == 300
    assert retry_delay(1, 10 ** 9, 15, 3600) == 3600
    assert 7.5 <= retry_delay(1, None, 15, 3600, jitter=lambda: 0.0) <= 15


def test_origin_is_scheme_host_and_non_default_port():
    assert push_service_origin("https://FCM.googleapis.com:443/fcm/send/x") == "https://fcm.googleapis.com"
    assert push_service_origin("http://127.0.0.1:8080/push/a") == "http://127.0.0.1:8080"
    assert push_service_origin("https://[2001:db8::1]:8443/x") == "https://[2001:db8::1]:8443"


def test_vapid_header_is_cached_per_origin_and_renewed_before_it_expires():
    public, private = _keypair()
    clock = [1_000_000.0]
    cache = VapidHeaderCache(load_vapid_key(private, public), "mailto:ops@example.com", clock=lambda: clock[0])

    a1 = cache.header("https://fcm.googleapis.com/fcm/send/1")
    assert cache.header("https://fcm.googleapis.com/fcm/send/2") == a1
    assert cache.header("https://updates.push.services.mozilla.com/x") != a1
    claims = _claims(a1)
    assert claims["aud"] == "https://fcm.googleapis.com" and claims["sub"] == "mailto:ops@example.com"
    assert claims["exp"] - clock[0] <= 24 * 3600
    assert a1.split("k=")[1] == public

    clock[0] += VAPID_LIFETIME_SECONDS / 2 - 1
    assert cache.header("https://fcm.googleapis.com/x") == a1
    clock[0] += 2
    renewed = cache.header("https://fcm.googleapis.com/x")
    assert renewed != a1 and _claims(renewed)["exp"] - clock[0] == VAPID_LIFETIME_SECONDS


def _claims(header: str) -> dict:
    token = header.split("t=")[1].split(",")[0]
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_vapid_keys_must_match_and_parse():
    public, private = _keypair()
    other_public, _ = _keypair()
    load_vapid_key(private, public)
    with pytest.raises(ConfigError, match="does not match"):
        load_vapid_key(private, other_public)
    with pytest.raises(ConfigError):
        load_vapid_key("not a key")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_production_session_refuses_a_loopback_peer_before_sending(scheme):
    # The connection is checked after TCP connect and before TLS or any byte of the request.
    from shared.push import PushMessage, PushSender, Subscription, make_session
    from tests.peers.push_service import PushService

    public, private = _keypair()
    with PushService(lifetime=10) as service:
        device = service.new_device()
        sender = PushSender(VapidHeaderCache(load_vapid_key(private, public), "mailto:ops@example.com"),
                            make_session(2, public_only=True), connect_timeout=2, read_timeout=2)
        endpoint = device.endpoint.replace("http://", f"{scheme}://")
        result = sender.send(Subscription(endpoint, device.p256dh, device.auth),
                             PushMessage(b'{"x":1}', ttl=60, urgency="normal", topic="t"))
    assert result.outcome == "failed" and "non-public" in (result.error or "")
    assert service.requests == 0
