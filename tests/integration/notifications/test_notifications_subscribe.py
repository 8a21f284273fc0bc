"""notifications-subscribe: what is stored, what is refused (and then nothing
is written), re-subscribing, the device cap, and unsubscribing."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.notifications.conftest import assert_envelope, subscribe
from tests.support import sign_user_token

P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"


def _count(sql, endpoint: str) -> int:
    return sql.one("SELECT count(*) FROM public.push_subscriptions WHERE endpoint = %s", (endpoint,))


def _endpoint() -> str:
    return f"https://fcm.googleapis.com/fcm/send/{uuid.uuid4().hex}"


def test_runbook_shape_and_browser_shape_are_both_stored(push_env, subscribe_app, sql):
    member = sql.member("scout")
    flat, browser = _endpoint(), _endpoint()

    # The runbook's curl body
    r1 = subscribe_app.post({"endpoint": flat, "auth": AUTH, "p256dh": P256DH}, headers=member.auth())
    # PushSubscription.toJSON(), padded base64 as some libraries send it
    r2 = subscribe_app.post({"endpoint": browser, "expirationTime": None,
                             "keys": {"p256dh": P256DH + "=", "auth": AUTH + "=="}}, headers=member.auth())

    assert (r1.status, r1.json) == (200, {"success": True})
    assert (r2.status, r2.json) == (200, {"success": True})
    rows = sql.execute("SELECT endpoint, p256dh, auth FROM public.push_subscriptions WHERE user_id = %s "
                       "ORDER BY endpoint", (member.id,))
    assert sorted(rows) == sorted([(flat, P256DH, AUTH), (browser, P256DH, AUTH)])


# The predecessor frontend encoded keys with btoa(): standard base64 with '+',
# '/' and padding. Same bytes, stored as unpadded base64url.
def test_standard_base64_keys_are_accepted_and_stored_as_base64url(push_env, subscribe_app, sql):
    member, endpoint = sql.member("scout"), _endpoint()
    raw_p256dh = base64.urlsafe_b64decode(P256DH + "=")
    raw_auth = base64.urlsafe_b64decode(AUTH + "==")
    std_p256dh, std_auth = base64.b64encode(raw_p256dh).decode(), base64.b64encode(raw_auth).decode()
    assert ("+" in std_p256dh or "/" in std_p256dh) and std_p256dh.endswith("=") and std_auth.endswith("==")

    r = subscribe_app.post({"endpoint": endpoint, "keys": {"p256dh": std_p256dh, "auth": std_auth}},
                           headers=member.auth())
    assert (r.status, r.json) == (200, {"success": True})
    assert sql.execute("SELECT p256dh, auth FROM public.push_subscriptions WHERE endpoint = %s",
                       (endpoint,)) == [(P256DH, AUTH)]


def test_resubscribing_an_endpoint_moves_it_to_the_caller(push_env, push_service, subscribe_app, sql):
    # Given a device subscribed by one member with a notification waiting for it
    push_env.setenv("PUSH_INLINE_BUDGET_SECONDS", "0")
    first, second = sql.member("scout"), sql.member("scout")
    device = push_service.new_device()
    subscribe(subscribe_app, first, device)
    nid = sql.one("INSERT INTO public.notification_queue (recipient_id, type, title) VALUES (%s, 'PRIVATE', 'For first') "
                  "RETURNING id::text", (first.id,))

    # When another member signs in on that browser and subscribes it
    subscribe(subscribe_app, second, device)

    # Then the endpoint belongs to the second member only, and the first member's message will not go to it
    assert sql.execute("SELECT user_id::text FROM public.push_subscriptions WHERE endpoint = %s",
                       (device.endpoint,)) == [(second.id,)]
    assert sql.one("SELECT status FROM nexus_private.push_deliveries WHERE notification_id = %s", (nid,)) == "cancelled"


def test_devices_beyond_the_cap_evict_the_oldest(push_env, subscribe_app, sql):
    push_env.setenv("PUSH_MAX_DEVICES_PER_USER", "2")
    member = sql.member("scout")
    endpoints = [_endpoint() for _ in range(3)]
    for e in endpoints:
        assert subscribe_app.post({"endpoint": e, "auth": AUTH, "p256dh": P256DH}, headers=member.auth()).status == 200

    kept = {r[0] for r in sql.execute("SELECT endpoint FROM public.push_subscriptions WHERE user_id = %s", (member.id,))}
    assert kept == set(endpoints[1:])


def test_delete_removes_only_the_callers_own_subscription(push_env, subscribe_app, sql):
    owner, stranger = sql.member("scout"), sql.member("scout")
    endpoint = _endpoint()
    subscribe_app.post({"endpoint": endpoint, "auth": AUTH, "p256dh": P256DH}, headers=owner.auth())

    # A stranger's DELETE succeeds without effect; the owner's removes it
    r = subscribe_app.request("DELETE", {"endpoint": endpoint}, headers=stranger.auth())
    assert (r.status, r.json) == (200, {"success": True, "removed": False})
    assert _count(sql, endpoint) == 1
    r = subscribe_app.request("DELETE", {"endpoint": endpoint}, headers=owner.auth())
    assert (r.status, r.json) == (200, {"success": True, "removed": True})
    assert _count(sql, endpoint) == 0


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("field,keys", [
    ("p256dh", {"p256dh": _b64(b"\x04" + b"\x01" * 64), "auth": AUTH}),         # not on the curve
    ("p256dh", {"p256dh": _b64(b"\x02" + b"\x01" * 32), "auth": AUTH}),         # compressed
    ("p256dh", {"p256dh": P256DH[:-4], "auth": AUTH}),                           # truncated
    ("p256dh", {"p256dh": "not base64!", "auth": AUTH}),
    ("auth", {"p256dh": P256DH, "auth": _b64(b"\x00" * 15)}),
    ("auth", {"p256dh": P256DH, "auth": _b64(b"\x00" * 17)}),
    ("auth", {"p256dh": P256DH, "auth": "a+b/"}),
    ("p256dh", {"p256dh": P256DH[:40] + "+" + P256DH[41:], "auth": AUTH}),    # both alphabets in one value
])
def test_invalid_keys_are_refused_and_nothing_is_written(field, keys, push_env, subscribe_app, sql):
    member, endpoint = sql.member("scout"), _endpoint()
    r = subscribe_app.post({"endpoint": endpoint, **keys}, headers=member.auth())
    assert r.status == 400 and r.json["error"] == "BAD_REQUEST"
    assert field in r.json["details"]["fields"]
    assert _count(sql, endpoint) == 0


@pytest.mark.parametrize("endpoint", [
    "http://fcm.googleapis.com/fcm/send/x",          # not https
    "https://127.0.0.1/push",
    "https://[::1]/push",
    "https://10.1.2.3/push",
    "https://192.168.0.7:8443/push",
    "https://169.254.169.254/latest/meta-data",       # link-local (cloud metadata)
    "https://[fe80::1]/push",
    "https://[::ffff:10.0.0.1]/push",                 # IPv4-mapped private
    "https://100.64.0.1/push",                        # carrier-grade NAT
    "https://2130706433/push",                        # 127.0.0.1, spelled as a number
    "https://0x7f.1/push",
    "https://localhost/push",
    "https://push.localhost/x",
    "https://metadata.google.internal/x",
    "https://intranet/push",
    "https://user:pw@fcm.googleapis.com/x",
    "ftp://fcm.googleapis.com/x",
    "https://fcm.googleapis.com/" + "x" * 2048,       # over 2 KB
    "https://fcm.googleapis.com/fcm/send/x\n",        # a trailing newline (Python's `$` would let it by)
])
def test_unsafe_endpoints_are_refused_in_production_and_nothing_is_written(endpoint, push_env, subscribe_app, sql):
    push_env.setenv("NEXUS_ENV", "production")
    member = sql.member("scout")
    r = subscribe_app.post({"endpoint": endpoint, "auth": AUTH, "p256dh": P256DH}, headers=member.auth())
    assert r.status == 400, r
    assert "endpoint" in r.json["details"]["fields"]
    assert sql.one("SELECT count(*) FROM public.push_subscriptions WHERE user_id = %s", (member.id,)) == 0


def test_dev_mode_accepts_loopback_http_only(push_env, subscribe_app, sql):
    member = sql.member("scout")
    ok = subscribe_app.post({"endpoint": "http://127.0.0.1:9/push/a", "auth": AUTH, "p256dh": P256DH},
                            headers=member.auth())
    private = subscribe_app.post({"endpoint": "http://10.0.0.2/push/a", "auth": AUTH, "p256dh": P256DH},
                                 headers=member.auth())
    assert ok.status == 200 and private.status == 400


def test_http_edge_refusals(push_env, subscribe_app, sql):
    member = sql.member("scout")
    body = {"endpoint": _endpoint(), "auth": AUTH, "p256dh": P256DH}
    assert subscribe_app.post(body).status == 401
    assert subscribe_app.post(body, headers={**member.auth(), "authorization": "Bearer x.y.z"}).status == 401
    assert subscribe_app.post(raw=b"x" * 9000, headers=member.auth()).status == 413
    assert subscribe_app.post(raw=b"{not json", headers=member.auth()).status == 400
    assert subscribe_app.post(body, headers={**member.auth(), "content-type": "text/plain"}).status == 415
    assert subscribe_app.request("PUT", body, headers=member.auth()).status == 405
    assert subscribe_app.post({"endpoint": _endpoint()}, headers=member.auth()).status == 400
    assert subscribe_app.request("DELETE", {}, headers=member.auth()).status == 400
    assert sql.one("SELECT count(*) FROM public.push_subscriptions WHERE user_id = %s", (member.id,)) == 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
_field = st.one_of(st.text(max_size=120), st.sampled_from([P256DH, AUTH, "https://fcm.googleapis.com/x",
                                                            "http://127.0.0.1:1/p", "https://[::1]/", "https://"]),
                   _json)
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({}, optional={"endpoint": _field, "p256dh": _field, "auth": _field,
                                        "expirationTime": _json,
                                        "keys": st.fixed_dictionaries({}, optional={"p256dh": _field, "auth": _field})}),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["POST", "DELETE"]), body=_bodies)
def test_any_body_gets_an_answer_below_500(push_env, subscribe_app, sql, method, body):
    member = _hypothesis_member(sql)
    r = subscribe_app.request(method, body, headers=member.auth())
    assert r.status in (200, 400, 413), r
    if r.status != 200:
        assert_envelope(r)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), auth=st.sampled_from(["good", "none", "garbage", "alg-none"]))
def test_any_bytes_and_tokens_get_an_answer_below_500(push_env, subscribe_app, sql, raw, auth):
    member = _hypothesis_member(sql)
    headers = {"content-type": "application/json"}
    if auth == "good":
        headers = member.auth()
    elif auth == "garbage":
        headers["authorization"] = "Bearer " + raw[:40].hex()
    elif auth == "alg-none":
        headers["authorization"] = "Bearer " + sign_user_token(member.id, algorithm="none", secret=None)
    r = subscribe_app.request("POST", raw=raw, headers=headers)
    assert_envelope(r)


_members: dict[str, object] = {}


def _hypothesis_member(sql):
    # One member for all examples: creating one per example would be slow.
    if "m" not in _members:
        _members["m"] = sql.member("scout")
    return _members["m"]
