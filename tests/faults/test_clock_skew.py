"""Tokens at the edges of clock skew: just inside the leeway passes, just outside is 401.

Supabase access tokens get AUTH_CLOCK_SKEW_SECONDS (set here to 20 s, not the
default, so the setting is what is tested) on `exp`, `nbf` and `iat`; LiveKit
webhook tokens get LiveKit's own minute. Every HTTP function that takes a
member token is checked, since each one verifies for itself.
"""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from tests import support
from tests.integration.livekit_webhook import events as ev
from tests.support import Client

SKEW = 20
MARGIN = 3  # seconds either side of the edge: far more than a request takes

MEMBER_FUNCTIONS = {
    "livekit-token": ("functions.livekit_token.app", "POST"),
    "net-bridge": ("functions.net_bridge.app", "POST"),
    "academy-request": ("functions.academy.request", "POST"),
    "academy-accept": ("functions.academy.accept", "POST"),
    "notifications-subscribe": ("functions.notifications.subscribe", "POST"),
    "handle-rescue-request": ("functions.notifications.rescue", "POST"),
    "health": ("functions.health.app", "GET"),
}
# claims relative to now -> accepted?
EDGES = {
    "exp just inside": ({"exp": -SKEW + MARGIN}, True),
    "exp just outside": ({"exp": -SKEW - MARGIN}, False),
    "nbf just inside": ({"nbf": SKEW - MARGIN}, True),
    "nbf just outside": ({"nbf": SKEW + MARGIN}, False),
    "iat just inside": ({"iat": SKEW - MARGIN}, True),
    "iat just outside": ({"iat": SKEW + MARGIN}, False),
}


@pytest.fixture
def skew_env(env, sql, vapid_pair):
    env.setenv("AUTH_CLOCK_SKEW_SECONDS", str(SKEW))
    public, private = vapid_pair  # handle-rescue-request needs a VAPID pair configured
    env.setenv("NEXT_PUBLIC_VAPID_PUBLIC_KEY", public)
    env.setenv("VAPID_PRIVATE_KEY", private)
    env.setenv("VAPID_SUBJECT", "mailto:ops@nomadnexus.test")
    from shared import auth, config

    config.get_settings.cache_clear()
    auth.reset_for_tests()
    return env


@pytest.mark.parametrize("edge", list(EDGES))
@pytest.mark.parametrize("function", list(MEMBER_FUNCTIONS))
def test_member_token_at_the_skew_edge(skew_env, sql, function, edge):
    import importlib

    module, method = MEMBER_FUNCTIONS[function]
    app = importlib.import_module(module).app
    member = sql.member("founder")
    claims, accepted = EDGES[edge]
    now = int(time.time())
    token = member.token(**{k: now + v for k, v in claims.items()})

    # When the function is called with that token and a body that is not a valid request
    reply = Client(app).request(method, raw=b"{}" if method == "POST" else b"",
                                headers={"authorization": f"Bearer {token}", "content-type": "application/json"})

    # Then inside the leeway the token passes (the body is what is refused, or health answers);
    # outside it, 401 before anything else is looked at
    if accepted:
        assert reply.status in (200, 400), reply
    else:
        assert reply.status == 401 and reply.json["error"] == "UNAUTHORIZED", reply


WEBHOOK_LEEWAY = 60  # LiveKit's own verifier allows a minute


@pytest.mark.parametrize("edge,offset,accepted", [
    ("exp just inside", {"exp": -WEBHOOK_LEEWAY + MARGIN}, True),
    ("exp just outside", {"exp": -WEBHOOK_LEEWAY - MARGIN}, False),
    ("nbf just inside", {"nbf": WEBHOOK_LEEWAY - MARGIN}, True),
    ("nbf just outside", {"nbf": WEBHOOK_LEEWAY + MARGIN}, False),
])
def test_livekit_webhook_token_at_the_skew_edge(skew_env, sql, edge, offset, accepted):
    from functions.livekit_webhook.app import app

    # Given a LiveKit event whose signature's time claims sit at the leeway's edge
    now = int(time.time())
    event = ev.room_event("room_started", f"skew-{uuid.uuid4().hex[:8]}", "RM_skew", now)
    body = ev.encode(event)
    claims = {"iss": support.LIVEKIT_KEY, "sub": "", "nbf": now - 5, "exp": now + 300, "sha256": ev.body_hash(body)}
    claims.update({k: now + v for k, v in offset.items()})
    token = jwt.encode(claims, support.LIVEKIT_SECRET, algorithm="HS256")

    reply = Client(app).post(raw=body, headers={**ev.HEADERS, "authorization": token})

    # Then it is stored inside the leeway and refused outside it, with nothing stored
    stored = sql.one("SELECT count(*) FROM nexus_private.livekit_webhook_jobs WHERE event_id = %s", (event["id"],))
    if accepted:
        assert reply.status == 200 and json.loads(reply.raw)["received"] is True, reply
        assert stored == 1
    else:
        assert reply.status == 401, reply
        assert stored == 0
