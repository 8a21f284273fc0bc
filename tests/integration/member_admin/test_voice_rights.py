"""SQL's voice_rights (what LiveKit is brought to) and shared/ranks.py (what
livekit-token mints) must give the same answer for every rank and net."""

from __future__ import annotations

import itertools
import uuid

from shared.ranks import RANKS, net_grants


# Given every combination of member rank and net thresholds, the two rule books agree.
def test_sql_rights_match_the_token_rules_for_every_rank_and_net(sql):
    members = {rank: sql.member(rank) for rank in RANKS}
    nets = {}
    for join, rx, tx in itertools.product(RANKS, repeat=3):
        nets[(join, rx, tx)] = sql.net(join=join, rx=rx, tx=tx, code=f"rights-{uuid.uuid4().hex[:10]}")
    pairs = [(rank, key) for rank in RANKS for key in nets]
    rows = sql.execute(
        "SELECT r ->> 'rank', (r ->> 'canJoin')::bool, (r ->> 'canSubscribe')::bool, (r ->> 'canPublish')::bool, "
        "(r ->> 'canPublishData')::bool FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS p(u, room, i), "
        "LATERAL public.voice_rights(p.u, p.room) r ORDER BY i",
        ([members[rank].id for rank, _ in pairs], [nets[key] for _, key in pairs]))
    for (rank, key), row in zip(pairs, rows):
        g = net_grants(rank, *key)
        assert row == (rank, g.can_join, g.can_subscribe, g.can_publish, g.can_publish_data), (rank, key)


def test_brigged_members_and_strangers_have_no_rights(sql):
    net = sql.net()
    brigged = sql.member("pioneer", ["Brigged"])
    for who in (brigged.id, str(uuid.uuid4())):
        r = sql.one("SELECT public.voice_rights(%s, %s)", (who, net))
        assert (r["canJoin"], r["canSubscribe"], r["canPublish"], r["canPublishData"]) == (False, False, False, False)
    scout = sql.member("scout")
    assert sql.one("SELECT public.voice_rights(%s, 'no-such-room')", (scout.id,))["canJoin"] is False
