"""Issue 25 against the real livekit-server: a brig written by SQL in another spelling is a brig.

A service-role script writes `" Brig\\t"` (not member-admin's spelling): the stored role is
`brigged`, the schedule takes the member out of the server's room, livekit-token refuses them,
and their old token's rejoin is undone by the webhook's join check.
"""

from __future__ import annotations

import asyncio

import psycopg

from tests.livekit_server.clients import Refused, joined
from tests.livekit_server.test_member_admin_live import _absent, listed, present, publishing, schedule, token_for, until
from tests.support import Client


def test_a_brig_written_by_sql_in_another_spelling_removes_and_refuses(sql, livekit, lk_call, database_url):
    net = sql.net("vagrant", "vagrant", "scout")
    scout = sql.member("scout")
    old_token = token_for(scout, net)

    async def scenario():
        async with joined(livekit.url, old_token) as s:
            await s.publish_microphone()
            await until(lambda: present(sql, net, scout), what="the scout's presence")
            assert await publishing(livekit, net, scout) == ["MICROPHONE"]

            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("SET ROLE service_role")
                conn.execute("UPDATE public.profiles SET roles = %s WHERE id = %s", ([" Brig\t"], scout.id))
            assert sql.one("SELECT roles FROM public.profiles WHERE id = %s", (scout.id,)) == ["brigged"]

            await asyncio.to_thread(schedule)
            assert scout.id not in await listed(livekit, net)
            await asyncio.wait_for(s.disconnected.wait(), 15)

        from functions.livekit_token.app import app
        refused = await asyncio.to_thread(Client(app).post, {"roomName": net}, scout.auth())
        assert (refused.status, refused.json["error"]) == (403, "FORBIDDEN"), refused

        try:
            async with joined(livekit.url, old_token) as again:
                await asyncio.wait_for(again.disconnected.wait(), 20)
        except Refused:
            pass  # removed before the client even finished connecting: as good
        await until(lambda: _absent(livekit, net, scout.id), what="the rejoined scout's removal")

    lk_call(scenario(), timeout=90)
