"""Lambda Function URL events (payload format 2.0) through `handler` answer as the ASGI app does.

The events are shaped as AWS delivers them to a Function URL: method and path
under requestContext.http, lower-cased headers, the body as text or base64
(`isBase64Encoded`), no `cookies` key when the request has none.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import support
from tests.support import Client

DOMAIN = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-north-1.on.aws"


class Context:
    """The attributes of Lambda's context object that code may read."""

    function_name = "livekit-token"
    memory_limit_in_mb = 512
    aws_request_id = "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-north-1:123456789012:function:livekit-token"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def url_event(method: str, headers: dict[str, str], body: bytes | None, *, b64: bool) -> dict:
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "host": DOMAIN,
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-forwarded-for": "203.0.113.7",
            "x-amzn-trace-id": "Root=1-5f84c7a9-0e5b1e2a3b4c5d6e7f8a9b0c",
            "user-agent": "curl/8.5.0",
            **{k.lower(): v for k, v in headers.items()},
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": DOMAIN.split(".")[0],
            "domainName": DOMAIN,
            "domainPrefix": DOMAIN.split(".")[0],
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "curl/8.5.0"},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": b64,
    }
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if b64 else body.decode("utf-8")
    return event


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture
def app_and_handler(env):
    from functions.livekit_token.app import app, handler

    return Client(app), handler


def normalise(status: int, headers: dict[str, str], raw: bytes) -> tuple:
    body = json.loads(raw) if raw else None
    if isinstance(body, dict) and "token" in body:
        claims = pyjwt.decode(body["token"], support.LIVEKIT_SECRET, algorithms=["HS256"])
        body = {**body, "token": {k: v for k, v in claims.items() if k not in ("nbf", "exp")}}
        body.pop("expiresAt")
    if not raw:
        headers = {k: v for k, v in headers.items() if k != "content-type"}  # mangum labels empty bodies
    return status, headers, body


def through_lambda(handler, method: str, headers: dict[str, str], body: bytes | None, b64: bool) -> tuple:
    out = handler(url_event(method, headers, body, b64=b64), Context())
    raw = base64.b64decode(out["body"]) if out.get("isBase64Encoded") else out.get("body", "").encode()
    assert "cookies" not in out
    return normalise(out["statusCode"], out.get("headers") or {}, raw)


def through_asgi(client: Client, method: str, headers: dict[str, str], body: bytes | None) -> tuple:
    reply = client.request(method, headers=headers, raw=body or b"")
    return normalise(reply.status, reply.headers, reply.raw)


@pytest.fixture(scope="module")
def people(sql):
    room = sql.net("voyager", "voyager", "founder")
    return {"founder": sql.member("founder"), "scout": sql.member("scout"), "room": room}


def cases(people) -> dict[str, tuple[str, dict[str, str], bytes | None]]:
    founder, scout, room = people["founder"], people["scout"], people["room"]
    ok = json.dumps({"roomName": room, "participantName": "Ærø ✈"}, ensure_ascii=False).encode()
    return {
        "200 allowed": ("POST", founder.auth(), ok),
        "403 insufficient": ("POST", scout.auth(), ok),
        "404 unknown room": ("POST", founder.auth(), b'{"roomName": "no-such-net"}'),
        "401 no token": ("POST", {"content-type": "application/json"}, ok),
        "401 bad token": ("POST", {**founder.auth(), "authorization": "Bearer x.y.z"}, ok),
        "400 malformed": ("POST", founder.auth(), b'{"roomName": '),
        "400 wrong type": ("POST", founder.auth(), b'{"roomName": 5}'),
        "400 binary": ("POST", founder.auth(), b"\xff\xfe\x00\x01"),
        "413 oversize": ("POST", founder.auth(), b'{"roomName": "' + b"x" * 17_000 + b'"}'),
        "415 text/plain": ("POST", {**founder.auth(), "content-type": "text/plain"}, ok),
        "405 GET": ("GET", founder.auth(), None),
        "204 OPTIONS": ("OPTIONS", {"origin": "https://app.example", "access-control-request-method": "POST"}, None),
    }


@pytest.mark.parametrize("b64", [False, True], ids=["text-body", "base64-body"])
def test_function_url_events_answer_as_the_asgi_app(app_and_handler, people, b64):
    client, handler = app_and_handler
    for name, (method, headers, body) in cases(people).items():
        if not b64 and body is not None and not _is_utf8(body):
            continue  # AWS always base64-encodes a body that is not text
        via_lambda = through_lambda(handler, method, headers, body, b64)
        via_asgi = through_asgi(client, method, headers, body)
        assert via_lambda == via_asgi, name
        assert str(via_lambda[0]) == name.split()[0], (name, via_lambda)


def test_error_envelopes_arrive_intact_through_lambda(app_and_handler, people):
    _, handler = app_and_handler
    out = handler(url_event("GET", {}, None, b64=False), Context())
    assert out["statusCode"] == 405
    assert out["isBase64Encoded"] is False
    assert json.loads(out["body"])["error"] == "METHOD_NOT_ALLOWED"
    assert out["headers"]["allow"] in ("OPTIONS, POST", "POST, OPTIONS")


# The handler maps Function URL events itself (see shared/lambda_adapter.py); given the
# same events, mangum's own mapping of the same app must produce the very same results.
@pytest.mark.parametrize("b64", [False, True], ids=["text-body", "base64-body"])
def test_function_url_mapping_matches_mangums(app_and_handler, people, b64):
    from mangum import Mangum

    from functions.livekit_token.app import app

    _, handler = app_and_handler
    asyncio.set_event_loop(asyncio.new_event_loop())
    reference = Mangum(app, lifespan="off")
    for name, (method, headers, body) in cases(people).items():
        if not b64 and body is not None and not _is_utf8(body):
            continue  # AWS always base64-encodes a body that is not text
        event = url_event(method, headers, body, b64=b64)
        event["cookies"] = ["session=abc", "theme=dark"]
        ours, theirs = handler(event, Context()), reference(event, Context())
        if name.startswith("200"):
            ours, theirs = (dict(r, body=normalise(200, {}, r["body"].encode())[2]) for r in (ours, theirs))
        assert ours == theirs, name


# Given code elsewhere in the container ran asyncio.run() (livekit-api does), when the next
# event goes through mangum, then the handler still answers (mangum alone would crash here).
def test_handler_survives_asyncio_run_between_invocations(people):
    from shared.lambda_adapter import lambda_handler

    async def plain_asgi_app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

    handler = lambda_handler(plain_asgi_app)
    event = url_event("POST", {}, b"{}", b64=False)
    assert handler(event, Context())["statusCode"] == 200
    asyncio.run(asyncio.sleep(0))
    assert handler(event, Context())["statusCode"] == 200


# Given an event that cannot be mapped, when it arrives, then the answer is the shared 500
# envelope, never a Lambda error (which a Function URL turns into a bare 502).
@pytest.mark.parametrize("mangle", ["base64", "no-context", "no-method", "v1-bad-host"])
def test_unmappable_events_get_the_500_envelope_not_a_crash(app_and_handler, people, mangle):
    _, handler = app_and_handler
    method, headers, body = cases(people)["200 allowed"]
    event = url_event(method, headers, body, b64=mangle == "base64")
    if mangle == "base64":
        event["body"] = "%%% not base64 %%%"
    elif mangle == "no-context":
        del event["requestContext"]
    elif mangle == "no-method":
        del event["requestContext"]["http"]["method"]
    else:  # a REST API (v1) event goes through mangum, which cannot parse this Host
        event = {"resource": "/", "path": "/", "httpMethod": "POST", "headers": {**headers, "host": "[::1]:443"},
                 "requestContext": {"identity": {"sourceIp": "203.0.113.7"}}, "body": body.decode(),
                 "isBase64Encoded": False}
    out = handler(event, Context())
    assert out["statusCode"] == 500
    assert json.loads(out["body"]) == {"error": "INTERNAL", "message": "Something went wrong on our side."}


def test_odd_but_valid_host_headers_do_not_matter(app_and_handler, people):
    _, handler = app_and_handler
    method, headers, body = cases(people)["200 allowed"]
    for host in ("[::1]:443", "example.com:notaport"):
        event = url_event(method, headers, body, b64=False)
        event["headers"]["host"] = host
        assert handler(event, Context())["statusCode"] == 200


_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_function_url_events_match_the_asgi_app(app_and_handler, people, data):
    client, handler = app_and_handler
    member = data.draw(st.sampled_from([people["founder"], people["scout"]]))
    method = data.draw(st.sampled_from(["POST", "POST", "POST", "GET", "OPTIONS", "DELETE"]))
    headers = {}
    if data.draw(st.booleans()):
        headers["authorization"] = data.draw(st.sampled_from([f"Bearer {member.token()}", "Bearer junk"]) | _text)
    ctype = data.draw(st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None]))
    if ctype:
        headers["content-type"] = ctype
    body = data.draw(st.one_of(
        st.none(), st.binary(max_size=64),
        st.builds(lambda name, extra: json.dumps({"roomName": name, **extra}).encode(),
                  st.sampled_from([people["room"], "no-such-net", ""]) | _text,
                  st.dictionaries(st.sampled_from(["participantName", "identity", "role"]), _text, max_size=2)),
    ))
    b64 = data.draw(st.booleans()) or (body is not None and not _is_utf8(body))
    assert through_lambda(handler, method, headers, body, b64) == through_asgi(client, method, headers, body)
