"""Fixtures for the notification tests: VAPID keys, the loopback push service,
members with subscribed devices, and the functions configured to use them."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.peers.push_service import Device, PushService
from tests.support import Client, Db, Member


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class VapidKeys:
    public: str
    private: str


@pytest.fixture(scope="session")
def vapid_keys() -> VapidKeys:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return VapidKeys(_b64url(public), _b64url(key.private_numbers().private_value.to_bytes(32, "big")))


@pytest.fixture
def push_env(env, vapid_keys, sql):
    """The process configured like a deployed notifications function in dev
    mode (loopback push service allowed), with fast retries and timeouts."""
    for k, v in {
        "NEXUS_ENV": "dev",
        "NEXT_PUBLIC_VAPID_PUBLIC_KEY": vapid_keys.public,
        "VAPID_PRIVATE_KEY": vapid_keys.private,
        "VAPID_SUBJECT": "mailto:ops@nomadnexus.test",
        "PUSH_RETRY_BASE_SECONDS": "0",
        "PUSH_CONNECT_TIMEOUT_SECONDS": "1",
        "PUSH_READ_TIMEOUT_SECONDS": "1",
        "PUSH_FANOUT_CONCURRENCY": "8",
    }.items():
        env.setenv(k, v)
    # Every test starts with no open deliveries left over from earlier ones
    # (whose push services are gone), so a fan-out pass sees only its own.
    sql.execute("UPDATE nexus_private.push_deliveries SET status = 'cancelled', claim_token = NULL "
                "WHERE status IN ('pending', 'claimed')")
    return env


@pytest.fixture
def push_service(vapid_keys):
    with PushService(application_server_key=vapid_keys.public, lifetime=60) as service:
        yield service


@pytest.fixture
def subscribe_app():
    from functions.notifications.subscribe import app

    return Client(app)


@pytest.fixture
def rescue_app():
    from functions.notifications.rescue import app

    return Client(app)


def subscribe(client: Client, member: Member, device: Device, *, browser_shape: bool = True) -> Any:
    body = device.subscription_json() if browser_shape else {
        "endpoint": device.endpoint, "p256dh": device.p256dh, "auth": device.auth}
    reply = client.post(body, headers=member.auth())
    assert reply.status == 200, reply
    return reply


def run_fanout() -> dict[str, Any]:
    """One scheduled fan-out pass, through the Lambda entry point."""
    from functions.notifications.fanout import handler

    return handler({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}, None)


def delivery_rows(sql: Db, notification_ids: list[str]) -> list[tuple]:
    return sql.execute(
        "SELECT d.status, d.attempts, d.last_status, d.last_error, s.endpoint "
        "FROM nexus_private.push_deliveries d LEFT JOIN public.push_subscriptions s ON s.id = d.subscription_id "
        "WHERE d.notification_id = ANY(%s::uuid[]) ORDER BY d.id", (notification_ids,))


def assert_envelope(reply: Any) -> None:
    """A 4xx answer is the shared envelope with the code matching the status."""
    from shared.errors import STATUS_BY_CODE

    assert 400 <= reply.status < 500, reply
    body = reply.json
    assert isinstance(body, dict) and set(body) <= {"error", "message", "details"}, body
    assert STATUS_BY_CODE.get(body["error"]) == reply.status and body["message"], body
