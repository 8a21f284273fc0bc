"""A statement is sent once: a lost answer is a 503, never a second execution.

The database sits behind a loopback TCP proxy (tests/peers/tcp_proxy.py) that
loses what networks lose: an answer after the server committed, a connection
the pooler hung up on while the container was frozen, a connection cut
without a FIN. Dead connections found before sending are replaced without
the caller noticing; a connection that dies after the statement went out is
a 503, because the server may have run it.
"""

from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared import config, db
from shared.db import DatabaseUnavailable, PsycopgTransport
from tests.peers.tcp_proxy import TcpProxy
from tests.support import Client

CONTEXT = b"livekit_token_context"


@pytest.fixture
def proxy(database_url):
    with TcpProxy(urlsplit(database_url).port) as p:
        yield p


def vapid_pair() -> tuple[str, str]:
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64(public), b64(key.private_numbers().private_value.to_bytes(32, "big"))


@pytest.fixture
def rescue_through_proxy(env, proxy, database_url):
    public, private = vapid_pair()
    env.setenv("DATABASE_URL", proxy.url_for(database_url))
    env.setenv("NEXT_PUBLIC_VAPID_PUBLIC_KEY", public)
    env.setenv("VAPID_PRIVATE_KEY", private)
    env.setenv("VAPID_SUBJECT", "mailto:ops@nomadnexus.test")
    env.setenv("PUSH_INLINE_BUDGET_SECONDS", "0")  # one SQL call per flare, nothing else
    config.get_settings.cache_clear()
    db.set_database(None)
    from functions.notifications.rescue import app

    return Client(app)


def flares(sql, member) -> int:
    return sql.one("SELECT count(*) FROM public.flares WHERE sender_id = %s", (member.id,))


# Given a warm container whose kept connection carries a flare, when the server commits it
# and the answer is lost on the way back, then the sender gets 503 (retry) and exactly one
# flare exists: the statement was not sent a second time (which used to answer 429).
def test_lost_answer_after_commit_is_503_and_the_flare_launches_once(rescue_through_proxy, proxy, sql):
    sender = sql.member("scout")
    db.call("health_snapshot", p_user_id=None)  # the connection is warm, as in a reused container
    proxy.drop_response_containing(b"flareId")

    reply = rescue_through_proxy.post({"location": "Hangar 1", "flareType": "MEDICAL"}, sender.auth())

    assert reply.status == 503, reply
    assert reply.json["error"] == "UNAVAILABLE"
    assert reply.headers["retry-after"] == "5"
    assert flares(sql, sender) == 1
    assert proxy.sent(b"launch_rescue_flare") == 1

    # The client retries; whatever the endpoint answers, the flare is not launched again.
    retry = rescue_through_proxy.post({"location": "Hangar 1", "flareType": "MEDICAL"}, sender.auth())
    assert retry.status < 500, retry
    assert flares(sql, sender) == 1


@pytest.fixture
def target(sql):
    return sql.member("scout"), sql.net()


def ask(transport: PsycopgTransport, target) -> str:
    member, room = target
    return transport.call("livekit_token_context", p_user_id=member.id, p_room=room)["net"]["code"]


@pytest.fixture
def transport(proxy, database_url):
    made: list[PsycopgTransport] = []

    def make(idle_ping_seconds: float) -> PsycopgTransport:
        made.append(PsycopgTransport(proxy.url_for(database_url), idle_ping_seconds=idle_ping_seconds))
        return made[-1]

    yield make
    for t in made:
        t.close()


# Given back-to-back requests on a warm connection, then nothing but the statements goes
# out: the liveness check before each costs no round trip.
def test_warm_back_to_back_calls_send_only_their_statements(transport, proxy, target):
    t = transport(idle_ping_seconds=60)
    for _ in range(3):
        assert ask(t, target) == target[1]
    assert proxy.sent(CONTEXT) == 3
    assert proxy.sent(b"SELECT 1") == 0


# Given a kept connection the pooler hung up on while the container was frozen, when the
# next request comes, then it reconnects transparently and the statement goes out once.
def test_connection_hung_up_while_idle_reconnects_transparently(transport, proxy, target):
    t = transport(idle_ping_seconds=60)
    assert ask(t, target) == target[1]
    pid = t._local.conn.info.backend_pid

    proxy.hang_up()

    assert ask(t, target) == target[1]
    assert t._local.conn.info.backend_pid != pid
    assert proxy.sent(CONTEXT) == 2


# Given a kept connection cut without a FIN (a NAT or failover while frozen) and idle past
# the ping threshold, when the next request comes, then the ping finds it dead, a new
# connection carries the statement, and the caller never notices.
def test_silently_dead_connection_is_found_by_the_idle_ping(transport, proxy, target):
    t = transport(idle_ping_seconds=0.2)
    assert ask(t, target) == target[1]

    proxy.sever_silently()
    time.sleep(0.3)

    assert ask(t, target) == target[1]
    assert proxy.sent(CONTEXT) == 2


# Given the same silent cut on a connection used a moment ago (no ping), when the statement
# fails on it, then the caller gets "unavailable" rather than a re-send, and the next call
# works on a new connection.
def test_silently_dead_connection_without_ping_is_unavailable_then_recovers(transport, proxy, target):
    t = transport(idle_ping_seconds=60)
    assert ask(t, target) == target[1]

    proxy.sever_silently()

    with pytest.raises(DatabaseUnavailable):
        ask(t, target)
    assert ask(t, target) == target[1]
    assert proxy.sent(CONTEXT) == 2  # the failed one never reached the server
