"""The database goes away mid-storm: 503 so LiveKit retries, then convergence, nothing lost or doubled.

Runs on a PostgreSQL cluster of its own (the session one is shared and must
not be stopped), with fsync on and a crash-like stop, so "acknowledged" is
tested as durable.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest

from tests import support
from tests.integration.livekit_webhook import events as ev
from tests.integration.livekit_webhook.simulation import Simulation, observed


@pytest.fixture
def own_postgres():
    from nexus.migrate import prepare_local
    from nexus.pg import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="nexus-lk-outage-"))
    server = EmbeddedPostgres(root / "data")
    server.start()
    try:
        url = server.create_database("outage")
        prepare_local(url, log=lambda *_: None)
        yield server, url
    finally:
        server.destroy()
        try:
            root.rmdir()
        except OSError:
            pass


def test_database_down_gives_503_and_redelivery_converges(env, own_postgres):
    from functions.livekit_webhook.app import handler

    server, url = own_postgres
    env.setenv("DATABASE_URL", url)
    from shared import config, db

    config.get_settings.cache_clear()
    db.set_database(None)

    sim = Simulation(11, rooms=3, steps=25)
    rng = random.Random(12)
    deliveries = [e for e in sim.events for _ in range(rng.randint(1, 2))]
    rng.shuffle(deliveries)
    cut = len(deliveries) // 2

    def send(event):
        body, headers = ev.signed(event)
        out = handler(ev.function_url_event(body, headers, b64=True), ev.LambdaContext())
        return out["statusCode"], out.get("headers", {}), out.get("body")

    # Given half the storm was acknowledged
    acked = set()
    for event in deliveries[:cut]:
        status, _, _ = send(event)
        assert status == 200
        acked.add(event["id"])

    # When the database crashes, every delivery is refused with 503 and Retry-After
    server.stop("immediate")
    refused = []
    for event in deliveries[cut:cut + 20]:
        status, headers, body = send(event)
        assert status == 503, body
        assert json.loads(body)["error"] == "UNAVAILABLE" and int(headers["retry-after"]) > 0
        refused.append(event)

    # Then after the restart, LiveKit's redeliveries (the refused ones, the rest of the storm,
    # and some acknowledged ones again) all land, and presence equals the truth
    server.start()
    for event in refused + deliveries[cut + 20:] + rng.sample(deliveries[:cut], 15):
        status, _, body = send(event)
        assert status == 200, body
    check = support.Db(url)
    try:
        assert observed(check, sim.tag) == sim.truth()
        # nothing acknowledged was lost in the crash, nothing was stored twice
        ids = [r[0] for r in check.execute("SELECT event_id FROM nexus_private.livekit_webhook_jobs")]
        assert sorted(ids) == sorted({e["id"] for e in sim.events})
        assert acked <= set(ids)
        assert check.one("SELECT count(*) FROM nexus_private.livekit_webhook_jobs WHERE status <> 'done'") == 0
    finally:
        check.close()
        db.set_database(None)
