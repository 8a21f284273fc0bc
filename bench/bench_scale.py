"""Per-request cost as the tables grow: 1k, 10k and 100k presence rows and queued deliveries.

History accumulates: every session ever held stays in voice_presence (and its
events in the webhook job table until purged), and a backlog of pushes can
pile up while a push service is down. Neither may make a request slower. At
each size the same work is timed:

- a webhook delivery (join or leave) into one of ten busy rooms whose members
  have hundreds of past sessions each, through the Lambda handler;
- the reconciler's question "which rooms have stale open presence?";
- the fan-out claiming a batch of 64 due deliveries and reporting them sent,
  with that many deliveries pending and due.

Ratios are against the 1k figure. The plans PostgreSQL chose at 100k for the
statements inside these SQL functions (auto_explain, nested statements, actual
row counts) show why the cost stays flat: every one is an index lookup bounded
by the batch or the room, never a scan of the history.

    .venv/bin/python -m bench.bench_scale
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from typing import Any

from bench.common import function_url_event, lambda_env, machine, postgres, sign_webhook, vapid_keys

SIZES = (1_000, 10_000, 100_000)
BATCH = 64
MEASURES = ("webhook delivery (handler)", "stale-rooms query", "claim + report 64 deliveries")
ROOMS, MEMBERS = 10, 500
WATCHED = ("voice_presence", "livekit_webhook_jobs", "livekit_rooms", "push_deliveries", "livekit_room_incarnations")


def _grow_presence(conn: Any, start: int, end: int) -> None:
    """Closed sessions of the past month in ten busy rooms, and their (done) webhook jobs."""
    conn.execute(
        "INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, joined_at, left_at, "
        "left_reason, last_event_at) "
        "SELECT 'busy-' || (g %% %(rooms)s), 'member-' || (g %% %(members)s), 'PA_hist_' || g, "
        "now() - interval '30 days' + g * interval '20 s', now() - interval '30 days' + g * interval '20 s' "
        "+ interval '15 minutes', 'participant_left', now() - interval '30 days' + g * interval '20 s' "
        "FROM generate_series(%(start)s, %(end)s - 1) g",
        {"rooms": ROOMS, "members": MEMBERS, "start": start, "end": end})
    conn.execute(
        "INSERT INTO nexus_private.livekit_webhook_jobs (event_id, event_type, room_name, payload, event_created_at, "
        "status, attempt, done_at) SELECT 'EV_hist_' || g, 'participant_left', 'busy-' || (g %% %(rooms)s), "
        "jsonb_build_object('event', 'participant_left', 'id', 'EV_hist_' || g), now() - interval '1 day', 'done', 1, "
        "now() - interval '1 day' FROM generate_series(%(start)s, %(end)s - 1) g",
        {"rooms": ROOMS, "start": start, "end": end})


def _grow_deliveries(conn: Any, members: list[str], count: int) -> None:
    per = count // len(members)
    conn.execute("INSERT INTO public.notification_queue (recipient_id, type, title, message) "
                 "SELECT m, 'BENCH', 'Backlog', 'queued' FROM unnest(%s::uuid[]) m, generate_series(1, %s)",
                 (members, per))


def _webhook_events(size: int, sessions: int) -> list[dict]:
    """A join then a leave for each new session of a member with history in the busy rooms."""
    start = int(time.time()) - 3600  # distinct, increasing join times
    out = []
    for i in range(sessions):
        room, identity, sid = f"busy-{i % ROOMS}", f"member-{(i * 7) % MEMBERS}", f"PA_{size}_{i}"
        at = start + i
        participant = {"sid": sid, "identity": identity, "joinedAt": str(at), "state": "ACTIVE"}
        base = {"room": {"sid": f"RM_busy{i % ROOMS}", "name": room}, "createdAt": str(at)}
        join = {"event": "participant_joined", "id": f"EV_{uuid.uuid4().hex}", **base, "participant": participant}
        leave = {"event": "participant_left", "id": f"EV_{uuid.uuid4().hex}", **base, "createdAt": str(at + 60),
                 "participant": {**participant, "state": "DISCONNECTED"}}
        for e in (join, leave):
            body = json.dumps(e, separators=(",", ":")).encode()
            out.append(function_url_event(body, {"content-type": "application/webhook+json",
                                                 "authorization": sign_webhook(body)}))
    return out


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


class PlanCatcher:
    """auto_explain on one connection: the plans of the statements nested in our SQL functions."""

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.messages: list[str] = []
        self.conn.add_notice_handler(lambda d: self.messages.append(d.message_primary or ""))
        self.conn.execute("LOAD 'auto_explain'")
        for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_nested_statements = on",
                        "auto_explain.log_analyze = on", "auto_explain.log_timing = off",
                        "auto_explain.log_format = json", "client_min_messages = log"):
            self.conn.execute(f"SET {setting}")

    def plans(self, sql: str, params: Any = None) -> list[tuple[str, list[str]]]:
        self.messages.clear()
        self.conn.execute(sql, params).fetchall()
        out = []
        for message in self.messages:
            _, _, doc = message.partition("plan:")
            try:
                plan = json.loads(doc)
            except ValueError:
                continue
            lines = _render(plan["Plan"])
            if any(t in line for line in lines for t in WATCHED):
                out.append((" ".join(plan.get("Query Text", "").split())[:160], lines))
        return out

    def close(self) -> None:
        self.conn.close()


def _render(node: dict, depth: int = 0) -> list[str]:
    what = node["Node Type"]
    if node.get("Index Name"):
        what += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        what += f" on {node['Relation Name']}"
    rows = node.get("Actual Rows")
    detail = f"  (actual rows={rows:g} loops={node.get('Actual Loops', 1):g})" if rows is not None else ""
    cond = node.get("Index Cond") or node.get("Filter") or ""
    lines = [f"{'  ' * depth}-> {what}{detail}" + (f"  [{cond[:90]}]" if cond else "")]
    for child in node.get("Plans", []):
        lines += _render(child, depth + 1)
    return lines


ROUNDS = int(os.environ.get("NEXUS_BENCH_SCALE_ROUNDS", "15"))
PER_BLOCK = 10  # webhook sessions (a join and a leave each), stale-rooms calls, and claims are 2 batches


def _prepare(conn: Any, size: int, public: str) -> list[str]:
    members = []
    for _ in range(100):
        uid = str(uuid.uuid4())
        conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (uid, f"{uid}@bench.invalid"))
        conn.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) "
                     "VALUES (%s, %s, %s, %s)", (uid, f"https://push.bench.invalid/{uid}", public, "A" * 22))
        members.append(uid)
    # A few people talking right now, so the stale-rooms question has something to find.
    conn.execute("INSERT INTO public.voice_presence (room_name, participant_identity, participant_sid, joined_at, "
                 "last_event_at) SELECT 'live-' || g, 'talker-' || g, 'PA_live_' || g, now() - interval '1 hour', "
                 "now() FROM generate_series(1, 20) g")
    _grow_presence(conn, 0, size)
    _grow_deliveries(conn, members, size)
    conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load
    return members


def run() -> dict[str, Any]:
    import psycopg

    from functions.livekit_webhook.app import handler as webhook
    from nexus.migrate import prepare_local
    from shared import config, db

    samples: dict[str, dict[int, list[float]]] = {m: {s: [] for s in SIZES} for m in MEASURES}
    explain: list[tuple[str, str, list[str]]] = []
    with postgres() as first_url:
        public, private = vapid_keys()
        os.environ.update(lambda_env(first_url, vapid=(public, private)))
        config.get_settings.cache_clear()
        base = first_url.rsplit("/", 1)[0]
        urls, conns, transports, events = {}, {}, {}, {}
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            for size in SIZES:
                admin.execute(f'CREATE DATABASE "scale_{size}"')
        for size in SIZES:
            urls[size] = f"{base}/scale_{size}"
            prepare_local(urls[size], log=lambda *_: None)
            conns[size] = psycopg.connect(urls[size], autocommit=True)
            _prepare(conns[size], size, public)
            transports[size] = db.PsycopgTransport(urls[size])
            events[size] = iter(_webhook_events(size, (ROUNDS + 1) * PER_BLOCK))

        def block(size: int, record: bool) -> None:
            db.set_database(transports[size])
            batch = [next(events[size]) for _ in range(2 * PER_BLOCK)]
            started = time.perf_counter()
            for e in batch:
                out = webhook(e, None)
                assert out["statusCode"] == 200, out
            hook = (time.perf_counter() - started) / len(batch)
            started = time.perf_counter()
            for _ in range(PER_BLOCK):
                db.call("livekit_presence_stale_rooms", p_older_than_seconds=600)
            stale = (time.perf_counter() - started) / PER_BLOCK
            started = time.perf_counter()
            for _ in range(2):
                claim = db.call("push_claim_deliveries", p_limit=BATCH, p_lease_seconds=60, p_max_attempts=8)
                assert len(claim["deliveries"]) == BATCH
                db.call("push_report_deliveries", p_claim_token=claim["claimToken"], p_max_attempts=8,
                        p_results=[{"deliveryId": d["deliveryId"], "outcome": "sent", "status": 201, "error": None}
                                   for d in claim["deliveries"]])
            claims = (time.perf_counter() - started) / 2
            # The backlog back as it was (outside the timing): every block sees the same queue.
            conns[size].execute("UPDATE nexus_private.push_deliveries SET status = 'pending', attempts = 0, "
                                "claim_token = NULL, next_attempt_at = now() - interval '1 hour', finished_at = NULL "
                                "WHERE status = 'sent'")
            if record:
                for measure, value in zip(MEASURES, (hook, stale, claims)):
                    samples[measure][size].append(value * 1e6)

        for size in SIZES:  # warm every database's caches and plans
            block(size, record=False)
        for r in range(ROUNDS):  # interleaved, order rotating, so drift touches every size alike
            order = SIZES[r % len(SIZES):] + SIZES[:r % len(SIZES)]
            for size in order:
                block(size, record=True)

        big = SIZES[-1]
        due = conns[big].execute("SELECT count(*) FROM nexus_private.push_deliveries "
                                 "WHERE status = 'pending'").fetchone()[0]
        assert due >= big - 100, due
        catcher = PlanCatcher(urls[big])
        sid = f"PA_explain_{uuid.uuid4().hex[:8]}"
        event = {"event": "participant_joined", "id": f"EV_{uuid.uuid4().hex}", "createdAt": str(int(time.time())),
                 "room": {"sid": "RM_busy0", "name": "busy-0"},
                 "participant": {"sid": sid, "identity": "member-0", "state": "ACTIVE"}}
        for title, sql, params in [
            ("webhook delivery: `livekit_webhook_ingest` (participant_joined into a busy room)",
             "SELECT public.livekit_webhook_ingest(p_event_id => %s, p_payload => %s, p_created_at => %s)",
             (event["id"], json.dumps(event), int(event["createdAt"]))),
            ("reconciler: `livekit_presence_stale_rooms`",
             "SELECT public.livekit_presence_stale_rooms(p_older_than_seconds => 600)", None),
            ("fan-out: `push_claim_deliveries` (batch of 64)",
             "SELECT public.push_claim_deliveries(p_limit => 64, p_lease_seconds => 60, p_max_attempts => 8)", None),
        ]:
            for query, lines in catcher.plans(sql, params):
                explain.append((title, query, lines))
        catcher.close()
        for size in SIZES:
            transports[size].close()
            conns[size].close()
        db.set_database(None)

    rows = {m: {str(s): statistics.median(samples[m][s]) for s in SIZES} for m in MEASURES}
    ratios = {m: statistics.median(b / a for a, b in zip(samples[m][SIZES[0]], samples[m][SIZES[-1]]))
              for m in MEASURES}
    data = {"rows": rows, "ratio": ratios}
    return {"markdown": report(data, explain), "data": data}


def report(data: dict[str, Any], explain: list[tuple[str, str, list[str]]]) -> str:
    lines = [
        "## Per-request cost as tables grow (1k, 10k, 100k rows)",
        "",
        f"voice_presence (and the webhook job table) hold that many past sessions in {ROOMS} busy rooms of "
        f"{MEMBERS} regular members; that many deliveries are pending and due. One database per size, measured in "
        f"{ROUNDS} interleaved rounds (order rotating); per-operation medians; ratio = median of the rounds' "
        "100k/1k ratios. Each round's claimed deliveries are put back, so every round sees the same backlog.",
        "",
        "| measure | " + " | ".join(f"{s // 1000}k rows" for s in SIZES) + " | 100k / 1k |",
        "|---|" + "---:|" * (len(SIZES) + 1),
    ]
    for measure, by in data["rows"].items():
        cells = [f"{by[str(s)]:.0f} µs" for s in SIZES]
        lines.append(f"| {measure} | " + " | ".join(cells) + f" | {data['ratio'][measure]:.2f}x |")
    lines += ["", "Plans at 100k rows (auto_explain of the statements inside the SQL functions that touch these "
              "tables; actual row counts):", ""]
    current = None
    for title, query, plan in explain:
        if title != current:
            if current is not None:
                lines += ["```", "</details>", ""]
            lines += [f"<details><summary>{title}</summary>", "", "```"]
            current = title
        lines += [f"-- {query}", *plan, ""]
    if current is not None:
        lines += ["```", "</details>", ""]
    return "\n".join(lines) + "\n"


def main() -> str:
    return run()["markdown"]


if __name__ == "__main__":
    print(machine())
    print(main())
