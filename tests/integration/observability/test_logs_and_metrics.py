"""Logs and metrics as Lambda writes them, while requests carrying real secrets are served.

Each function runs through its Lambda handler in Lambda mode (JSON logs,
embedded metrics), answering Function URL events with a Lambda context, on
the real database. What reaches stdout (CloudWatch, in AWS) must carry the
request id, function, user id and outcome of every request, the metrics the
issue names, and not one token, secret, push key or endpoint.
"""

from __future__ import annotations

import json
import time

import pytest

from shared import observability
from shared.lambda_adapter import lambda_handler
from tests import support
from tests.integration.livekit_webhook import events
from tests.integration.livekit_webhook.events import LambdaContext, function_url_event


@pytest.fixture
def lambda_mode(push_env, vapid_keys):
    push_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "nomadnexus-test")
    push_env.setenv("NEXUS_METRICS_NAMESPACE", "NomadNexus/test")
    observability.reset_for_tests()
    yield push_env
    observability.reset_for_tests()


def handler_for(module: str, require: tuple[str, ...]):
    import importlib

    return lambda_handler(importlib.import_module(module).app, require=require)


def invoke(handler, body: dict | bytes, headers: dict[str, str], method: str = "POST") -> tuple[dict, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    context = LambdaContext()
    result = handler(function_url_event(raw, headers, b64=False, method=method), context)
    return result, context.aws_request_id


def lines(captured: str) -> list[dict]:
    out = []
    for line in captured.splitlines():
        assert line.startswith("{"), f"not a JSON line: {line[:200]}"
        out.append(json.loads(line))
    return out


def request_line(records: list[dict], request_id: str) -> dict:
    matching = [r for r in records if r.get("request_id") == request_id]
    assert len(matching) == 1, (request_id, records)
    return matching[0]


def metric(record: dict, name: str) -> float | None:
    declared = [m["Name"] for d in record.get("_aws", {}).get("CloudWatchMetrics", []) for m in d["Metrics"]]
    if name not in declared:
        return None
    block = record["_aws"]["CloudWatchMetrics"][0]
    assert block["Namespace"] == "NomadNexus/test" and block["Dimensions"] == [["function"]]
    return record[name]


def test_request_lines_carry_who_what_and_outcome_and_never_a_secret(
        lambda_mode, vapid_keys, push_service, sql, capsys):
    token_fn = handler_for("functions.livekit_token.app", ("database", "auth", "livekit"))
    subscribe_fn = handler_for("functions.notifications.subscribe", ("database", "auth"))
    rescue_fn = handler_for("functions.notifications.rescue", ("database", "auth", "vapid"))
    webhook_fn = handler_for("functions.livekit_webhook.app", ("database", "livekit"))
    capsys.readouterr()

    scout, medic = sql.member("scout"), sql.member("voyager", ["Medic"])
    room = sql.net("vagrant", "vagrant", "scout")
    device = push_service.new_device()
    scout_jwt, medic_jwt = scout.token(), medic.token()
    json_headers = {"content-type": "application/json"}

    # Given a token request, a push subscription, a flare, a signed webhook and a forged token...
    token_reply, token_rid = invoke(token_fn, {"roomName": room, "participantName": "Ace"},
                                    {**json_headers, "authorization": f"Bearer {scout_jwt}"})
    sub_reply, sub_rid = invoke(subscribe_fn, device.subscription_json(),
                                {**json_headers, "authorization": f"Bearer {medic_jwt}"})
    flare_reply, flare_rid = invoke(rescue_fn, {"location": "Stanton III - Crusader", "flareType": "MEDICAL"},
                                    {**json_headers, "authorization": f"Bearer {scout_jwt}"})
    now = time.time()
    body, webhook_headers = events.signed(events.participant_event(
        "participant_joined", room, "RM_obs", scout.id, "PA_obs", now, now, metadata={"userId": scout.id}))
    webhook_reply, webhook_rid = invoke(webhook_fn, body, webhook_headers)
    forged = support.sign_user_token(scout.id, secret="not-the-project-secret-0123456789abcdef0123")
    forged_reply, forged_rid = invoke(token_fn, {"roomName": room}, {**json_headers, "authorization": f"Bearer {forged}"})

    assert token_reply["statusCode"] == 200, token_reply
    assert sub_reply["statusCode"] == 200, sub_reply
    assert flare_reply["statusCode"] == 202, flare_reply
    assert json.loads(flare_reply["body"])["devicesReached"] == 1
    assert webhook_reply["statusCode"] == 200, webhook_reply
    assert forged_reply["statusCode"] == 401
    out = capsys.readouterr()
    records = lines(out.out)

    # ...then each request left one line with Lambda's request id, the function, the caller and the outcome...
    expected = {
        token_rid: ("livekit-token", scout.id, 200, "ok"),
        sub_rid: ("notifications-subscribe", medic.id, 200, "ok"),
        flare_rid: ("handle-rescue-request", scout.id, 202, "ok"),
        webhook_rid: ("livekit-webhook", None, 200, "ok"),
        forged_rid: ("livekit-token", None, 401, "UNAUTHORIZED"),
    }
    for rid, (function, user_id, status, outcome) in expected.items():
        line = request_line(records, rid)
        assert (line["function"], line.get("user_id"), line["status"], line["outcome"]) == (
            function, user_id, status, outcome), line
        assert line["level"] == "INFO" and line["message"] == "request" and line["duration_ms"] >= 0

    # ...the metrics of each request ride in its own line (CloudWatch EMF)...
    assert metric(request_line(records, token_rid), "TokensMinted") == 1
    assert metric(request_line(records, flare_rid), "PushSent") == 1
    assert metric(request_line(records, webhook_rid), "WebhookEventsApplied") == 1
    assert metric(request_line(records, forged_rid), "TokensMinted") is None

    # ...and no secret, token, push key or endpoint appears anywhere in the output.
    minted = json.loads(token_reply["body"])["token"]
    secrets = {
        "member access token": scout_jwt, "medic access token": medic_jwt, "forged token": forged,
        "minted LiveKit token": minted, "LiveKit API secret": support.LIVEKIT_SECRET,
        "Supabase JWT secret": support.JWT_SECRET, "VAPID private key": vapid_keys.private,
        "push auth secret": device.auth, "push p256dh key": device.p256dh, "push endpoint": device.endpoint,
        "webhook signature": webhook_headers["authorization"],
    }
    text = out.out + out.err
    for what, value in secrets.items():
        assert value not in text, f"{what} reached the logs"
        # nor any recognisable part of a JWT (its signature segment)
        if value.count(".") == 2:
            assert value.rsplit(".", 1)[1] not in text, f"{what}'s signature reached the logs"


def test_a_failing_request_counts_a_server_error(lambda_mode, sql, capsys):
    # Given the database unreachable, when a member asks for a token,
    # then the answer is 503 and its line counts a ServerErrors metric for the alarm.
    from shared import db

    token_fn = handler_for("functions.livekit_token.app", ("database", "auth", "livekit"))
    db.set_database(db.PsycopgTransport("postgresql://nobody@127.0.0.1:9/none", connect_timeout=1))
    capsys.readouterr()
    member, room = sql.member("scout"), sql.net()
    reply, rid = invoke(token_fn, {"roomName": room}, {"content-type": "application/json",
                                                       "authorization": f"Bearer {member.token()}"})
    assert reply["statusCode"] == 503
    line = request_line(lines(capsys.readouterr().out), rid)
    assert line["outcome"] == "UNAVAILABLE" and metric(line, "ServerErrors") == 1


def test_scheduled_jobs_write_json_lines_and_their_metrics(lambda_mode, push_service, sql, capsys):
    # Given a due notification for a subscribed device, when the fan-out schedule runs in Lambda,
    # then its summary line is JSON and PushSent is emitted as an EMF record.
    from functions.notifications.fanout import handler
    from tests.integration.notifications.conftest import subscribe
    from tests.support import Client

    from functions.notifications.subscribe import app as subscribe_app

    member, device = sql.member("scout"), push_service.new_device()
    subscribe(Client(subscribe_app), member, device)
    sql.execute("INSERT INTO public.notification_queue (recipient_id, type, title, message, payload) "
                "VALUES (%s, 'TEST', 'Hello', 'World', '{}'::jsonb)", (member.id,))
    capsys.readouterr()
    observability.configure_logging()
    handler({"source": "aws.scheduler"}, LambdaContext(remaining_ms=20_000))
    records = lines(capsys.readouterr().out)
    assert any(r.get("message") == "push fan-out pass" and r.get("function") == "push-fanout" for r in records)
    sent = [r for r in records if "PushSent" in r]
    assert sent and sent[0]["function"] == "push-fanout" and sent[0]["PushSent"] >= 1
    assert device.auth not in json.dumps(records) and device.endpoint not in json.dumps(records)


def test_fanout_counts_failed_and_gone_pushes(lambda_mode, push_service, sql, capsys):
    # Given one device whose push service refuses with 400 and one that is gone (404),
    # when the fan-out schedule runs in Lambda, then PushFailed and PushGone are emitted.
    from functions.notifications.fanout import handler
    from functions.notifications.subscribe import app as subscribe_app
    from tests.integration.notifications.conftest import subscribe
    from tests.support import Client

    member = sql.member("scout")
    refused, gone = push_service.new_device(), push_service.new_device()
    for device in (refused, gone):
        subscribe(Client(subscribe_app), member, device)
    push_service.script(refused, 400)
    push_service.script(gone, 404)
    sql.execute("INSERT INTO public.notification_queue (recipient_id, type, title, message, payload) "
                "VALUES (%s, 'TEST', 'Hello', 'World', '{}'::jsonb)", (member.id,))
    capsys.readouterr()
    observability.configure_logging()
    handler({"source": "aws.scheduler"}, LambdaContext(remaining_ms=20_000))
    records = [r for r in lines(capsys.readouterr().out) if r.get("function") == "push-fanout"]
    assert sum(r.get("PushFailed", 0) for r in records) >= 1
    assert sum(r.get("PushGone", 0) for r in records) >= 1
    assert all(metric(r, "PushFailed") == r["PushFailed"] for r in records if "PushFailed" in r)
