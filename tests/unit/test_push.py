"""The pure parts of Web Push: endpoint rules, payload size, retry timing,
Retry-After parsing, and the VAPID header cache."""

from __future__ import annotations

import base64
import json
import time

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
    "https://push.example.com:443/x",
    "https://[64:ff9b::808:808]/x",  # NAT64 of a public address
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
    # IPv6 forms carrying a private IPv4 address
    "https://[64:ff9b::a00:1]/", "https://[64:ff9b::7f00:1]/", "https://[64:ff9b:1::a00:1]/",
    "https://[::a00:1]/", "https://[::808:808]/", "https://[::ffff:0:a00:1]/", "https://[::ffff:a9fe:a9fe]/",
    # any port but the push services' own
    "https://1.1.1.1:22/x", "https://fcm.googleapis.com:8443/x", "https://push.example.com:80/x",
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


@pytest.mark.parametrize("header,expected", [
    ("²", None), ("١٢٠", None), ("１２０", None), ("12²", None),  # non-ASCII digits: str.isdigit() says yes
    ("-5", None), ("1.5", None), ("1e3", None), ("0x10", None), ("", None), ("   ", None),
    ("9" * 5000, None), ("9" * 32, 86400.0), ("86401", 86400.0), (" 30 ", 30.0), ("0", 0.0),
    ("Fri, 31 Dec 9999 23:59:59 GMT", 86400.0),  # far future: capped
    ("Wed, 10 Dec 2025 00:00:00 GMT", 0.0),  # in the past: now
    ("Wed, 99 Dec 2025 00:00:00 GMT", None), ("Wed, 10 Dec 99999999999 00:00:00 GMT", None),
    ("Mon, 01 Jan 0001 00:00:00 +2400", None), ("Wed, 10 Dec 2025 00:00:00 \u00b2", None),
])
def test_bad_retry_after_means_the_default_backoff_never_an_exception(header, expected):
    assert parse_retry_after(header, now=1765324800.0) == expected
    assert classify(503, header, "Service Unavailable").outcome == "retry"


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


@pytest.mark.parametrize("address,port,allowed", [
    ("8.8.8.8", 443, True), ("2606:4700::1111", 443, True),
    ("8.8.8.8", 22, False), ("8.8.8.8", 8443, False),
    ("64:ff9b::a00:1", 443, False), ("::a00:1", 443, False), ("::ffff:10.0.0.1", 443, False),
    ("fe80::1%eth0", 443, False),
])
def test_production_connections_are_checked_for_address_and_port(address, port, allowed):
    # Given the peer a production connection actually reached (after DNS)
    from shared.push_transport import connect_refusal

    # Then only a public address on 443 may be sent to
    assert (connect_refusal(address, port) is None) is allowed


# --- sending against a push service that misbehaves ---------------------------

def _sender(connect: float, read: float, *, public_only: bool = False):
    from shared.push import PushSender, make_session

    public, private = _keypair()
    return PushSender(VapidHeaderCache(load_vapid_key(private, public), "mailto:ops@example.com"),
                      make_session(2, public_only=public_only), connect_timeout=connect, read_timeout=read)


def _send(sender, device, **kw):
    from shared.push import PushMessage, Subscription

    return sender.send(Subscription(device.endpoint, device.p256dh, device.auth),
                       PushMessage(b'{"x":1}', ttl=60, urgency="high", topic="t"), **kw)


def _wait_for(predicate, seconds: float = 30.0) -> bool:  # a guard against hanging only
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_service_trickling_its_answer_is_cut_off_at_the_send_deadline():
    # Given a push service that sends one header byte every 0.1 s, forever
    from tests.peers.push_service import PushService, Reply

    with PushService(lifetime=20) as service:
        device = service.new_device()
        service.script(device, Reply(201, trickle=0.1))
        sender = _sender(0.5, 0.5)

        # When we send with 0.5 s connect and 0.5 s read timeouts
        started = time.monotonic()
        result = _send(sender, device)
        took = time.monotonic() - started

        # Then the send ends at its 1 s deadline (not before: no machine is too fast for that bound),
        # as a timeout to retry, and we hung up while the trickle still went on
        assert result.outcome == "retry" and result.error == "timeout"
        assert took >= 0.9, took
        assert _wait_for(lambda: service.hung_up)
        assert service.hung_up[0][1] < Reply.trickle_for


def test_an_explicit_deadline_is_kept_even_when_the_timeouts_are_longer():
    from tests.peers.push_service import PushService, Reply

    with PushService(lifetime=20) as service:
        device = service.new_device()
        service.script(device, Reply(201, trickle=0.1))
        # (timeouts longer than the trickle lasts: only the deadline can end the send as a timeout)
        sender = _sender(Reply.trickle_for, Reply.trickle_for)
        result = _send(sender, device, deadline=time.monotonic() + 0.6)
        assert result.outcome == "retry" and result.error == "timeout"
        assert _wait_for(lambda: service.hung_up)
        assert service.hung_up[0][1] < Reply.trickle_for  # we hung up; the trickle did not end


def test_a_201_with_an_endless_body_is_sent_without_reading_the_body():
    # Given a push service that accepts, then announces 1 MB of body and trickles it
    from tests.peers.push_service import PushService, Reply

    with PushService(lifetime=20) as service:
        device = service.new_device()
        service.script(device, Reply(201, trickle=0.1, trickle_in="body"))
        sender = _sender(2, 2)

        # When we send
        result = _send(sender, device)

        # Then the push counts as sent (reading the endless body would have ended at the 4 s send
        # deadline as a timeout), and the connection is dropped
        assert result.outcome == "sent" and result.status == 201
        assert _wait_for(lambda: service.hung_up)


def test_honest_answers_keep_the_connection_alive():
    from tests.peers.push_service import PushService

    with PushService(lifetime=20) as service:
        device = service.new_device()
        sender = _sender(2, 2)
        assert [_send(sender, device).outcome for _ in range(3)] == ["sent"] * 3
        assert service.connections == 1 and len(service.received) == 3


def test_a_redirect_is_not_followed():
    # Given a push service that redirects elsewhere
    from tests.peers.push_service import PushService, Reply

    with PushService(lifetime=20) as service, PushService(lifetime=20) as elsewhere:
        device, target = service.new_device(), elsewhere.new_device()
        service.script(device, Reply(307, {"Location": target.endpoint}))

        result = _send(_sender(2, 2), device)

        # Then the redirect is a refusal, and nothing reached the other host
        assert result.outcome == "failed" and result.status == 307
        assert elsewhere.requests == 0
