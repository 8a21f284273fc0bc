"""handle-rescue-request: who may launch, the rate limit, and bad input; every
refusal writes nothing."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import text
from tests.integration.notifications.conftest import assert_envelope
from tests.text_cases import SHOWN

FLARE = {"location": "Stanton III - Crusader", "flareType": "MEDICAL"}


def _written(sql, member) -> tuple[int, int]:
    flares = sql.one("SELECT count(*) FROM public.flares WHERE sender_id = %s", (member.id,))
    notes = sql.one("SELECT count(*) FROM public.notification_queue WHERE payload ->> 'senderId' = %s", (member.id,))
    return flares, notes


def test_a_vagrant_cannot_launch_a_flare(push_env, rescue_app, sql):
    sql.member("scout", ["Medic"])  # a responder exists
    vagrant = sql.member("vagrant")
    r = rescue_app.post(FLARE, headers=vagrant.auth())
    assert r.status == 403
    assert r.json["error"] == "INSUFFICIENT_CLEARANCE"
    assert r.json["details"] == {"required": "scout", "rank": "vagrant"}
    assert _written(sql, vagrant) == (0, 0)


def test_rank_is_read_from_the_database_not_the_token(push_env, rescue_app, sql):
    # A member demoted to vagrant still holding a token minted as a scout
    member = sql.member("scout")
    sql.execute("UPDATE public.profiles SET rank = 'vagrant' WHERE id = %s", (member.id,))
    r = rescue_app.post(FLARE, headers=member.auth(user_metadata={"rank": "scout"}))
    assert r.status == 403 and _written(sql, member) == (0, 0)


def test_a_second_flare_inside_the_window_is_rate_limited(push_env, rescue_app, sql):
    push_env.setenv("FLARE_RATE_LIMIT_SECONDS", "120")
    scout = sql.member("scout")
    first = rescue_app.post(FLARE, headers=scout.auth())
    assert first.status == 202
    before = _written(sql, scout)

    second = rescue_app.post({"location": "Pyro", "flareType": "COMBAT"}, headers=scout.auth())

    assert second.status == 429 and second.json["error"] == "RATE_LIMITED"
    assert 118 <= int(second.headers["retry-after"]) <= 120
    assert _written(sql, scout) == before == (1, before[1])


def test_the_rate_limit_is_per_member(push_env, rescue_app, sql):
    a, b = sql.member("scout"), sql.member("voyager")
    assert rescue_app.post(FLARE, headers=a.auth()).status == 202
    assert rescue_app.post(FLARE, headers=b.auth()).status == 202


def test_concurrent_flares_from_one_member_launch_once(push_env, rescue_app, sql):
    from concurrent.futures import ThreadPoolExecutor

    scout = sql.member("scout")
    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: rescue_app.post(FLARE, headers=scout.auth()).status, range(4)))
    assert statuses == [202, 429, 429, 429]
    assert _written(sql, scout)[0] == 1


def test_bad_bodies_are_refused_and_nothing_is_written(push_env, rescue_app, sql):
    scout = sql.member("scout")
    for body in ({"location": "Pyro"}, {"flareType": "MEDICAL"}, {"location": "", "flareType": "MEDICAL"},
                 {"location": "x" * 201, "flareType": "MEDICAL"}, {"location": "Pyro", "flareType": "medical"},
                 {"location": "Pyro", "flareType": "RESCUE"}, {"location": 7, "flareType": "COMBAT"},
                 {"location": "a\u0007b", "flareType": "COMBAT"}, ["Pyro", "COMBAT"]):
        r = rescue_app.post(body, headers=scout.auth())
        assert r.status == 400, (body, r)
    assert rescue_app.post(raw=b"{" + b" " * 5000 + b"}", headers=scout.auth()).status == 413
    assert rescue_app.post(FLARE).status == 401
    assert rescue_app.request("GET", headers=scout.auth()).status == 405
    assert _written(sql, scout) == (0, 0)


# Responders are shown the location: shared/text.py's rules, in the
# function and in the database (whatever writes the row). The function strips
# surrounding whitespace first ("Ace\r" becomes a fine "Ace").
@pytest.mark.parametrize("location", [v for v, shown in SHOWN if not shown and text.problem(v.strip())])
def test_a_location_others_must_not_be_shown_is_refused(push_env, rescue_app, sql, location):
    scout = sql.member("scout")
    r = rescue_app.post({"location": location, "flareType": "COMBAT"}, headers=scout.auth())
    assert r.status == 400 and "location" in r.json["details"]["fields"], r
    assert _written(sql, scout) == (0, 0)
    with pytest.raises(psycopg.errors.CheckViolation):
        sql.execute("INSERT INTO public.flares (sender_id, flare_type, location) VALUES (%s, 'COMBAT', %s)",
                    (scout.id, location))


_text = st.text(max_size=250)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_bodies = st.one_of(_json, st.fixed_dictionaries({}, optional={
    "location": st.one_of(_text, _json), "flareType": st.one_of(st.sampled_from(["MEDICAL", "COMBAT", "", "medic"]), _json)}))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_body_gets_an_answer_below_500(push_env, rescue_app, sql, body):
    scout = _scout(sql)
    r = rescue_app.post(body, headers=scout.auth())
    assert r.status in (202, 400, 413, 429), r
    if r.status != 202:
        assert_envelope(r)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), token=st.sampled_from(["good", "none", "garbage", "expired"]))
def test_any_bytes_and_tokens_get_an_answer_below_500(push_env, rescue_app, sql, raw, token):
    scout = _scout(sql)
    headers = {"content-type": "application/json"}
    if token == "good":
        headers = scout.auth()
    elif token == "garbage":
        headers["authorization"] = "Bearer " + raw[:60].decode("latin-1")
    elif token == "expired":
        headers = scout.auth(exp=1)
    r = rescue_app.request("POST", raw=raw, headers=headers)
    assert_envelope(r)


_cache: dict[str, object] = {}


def _scout(sql):
    if "scout" not in _cache:
        _cache["scout"] = sql.member("scout")
    return _cache["scout"]
