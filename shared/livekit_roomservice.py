"""LiveKit's RoomService for the scheduled jobs, on livekit-api (aiohttp, protobuf).

Used by the stale-presence reconciler (`presence_by_room`) and by the
academy's sim-pod expiry (`delete_room`), the two functions whose packages
ship livekit-api (nexus/package.py); everything else uses the stdlib-only
`shared.livekit_rooms.RoomServiceClient` this extends. livekit.api is still
imported lazily inside the calls, so importing this module stays cheap.

    rooms = RoomService.from_settings()            # LIVEKIT_URL/_API_KEY/_API_SECRET
    rooms.list_participants("net-alpha")           # [Participant(sid, identity, ...)]
    rooms.presence_by_room(["net-alpha", "net-x"]) # {"net-alpha": [...], "net-x": RoomNotFound}
    rooms.delete_room("sim-pod-123")               # True if deleted, False if already gone

Outcomes are those of shared/livekit_rooms.py: a value, RoomNotFound,
LiveKitUnavailable, DeadlineReached. Each call runs on its own short-lived
event loop and HTTP session, so the facade is safe from any synchronous code
(Lambda handlers, threads). Tests point `url` at tests/peers/livekit_twirp.py,
a loopback fake of the service, or at the real livekit-server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from shared.livekit_rooms import (DeadlineReached, LiveKitError, LiveKitUnavailable, Participant, RoomInfo,
                                  RoomNotFound, RoomServiceClient)

T = TypeVar("T")


class RoomService(RoomServiceClient):
    """RoomServiceClient plus the room calls the scheduled jobs make through livekit-api."""

    def list_participants(self, room: str) -> list[Participant]:
        """Participants LiveKit has in `room` now; [] also when LiveKit does not know the room.
        Raises LiveKitUnavailable (RoomNotFound only from a server that answers `not_found`)."""
        return self._run(lambda lk: self._participants(lk, room))

    def participants_by_room(self, rooms: Iterable[str], concurrency: int = 8) -> dict[str, list[Participant] | LiveKitError]:
        """`list_participants` for many rooms on one session; per room a list or the error.
        A room LiveKit does not know comes back as [] (see `presence_by_room`)."""
        names = list(dict.fromkeys(rooms))
        return self._run(lambda lk: self._participants_each(lk, names, concurrency))

    def presence_by_room(self, rooms: Iterable[str], concurrency: int = 8, *,
                         deadline: float | None = None) -> dict[str, list[Participant] | LiveKitError]:
        """Per room: its participants if LiveKit lists the room, `RoomNotFound` if it does not,
        or the error that kept LiveKit from answering. One ListRooms call decides existence
        for the whole batch; only rooms it lists are asked for their participants.

        `deadline` (time.monotonic()): whatever LiveKit's latency, this returns by then;
        rooms whose answer had not come are `DeadlineReached`."""
        names = list(dict.fromkeys(rooms))
        if not names:
            return {}  # ListRooms with no names would list every room
        if deadline is not None and deadline <= time.monotonic():
            return {room: DeadlineReached(room) for room in names}

        async def all_rooms(lk: Any) -> dict[str, list[Participant] | LiveKitError]:
            try:
                listed = self._rooms(lk, names)
                live = {r.name for r in await (listed if deadline is None
                                               else asyncio.wait_for(listed, deadline - time.monotonic()))}
            except asyncio.TimeoutError:  # the deadline's; _guard turns LiveKit's own into LiveKitUnavailable
                return {room: DeadlineReached(room) for room in names}
            except LiveKitError as e:
                return {room: e for room in names}
            answers: dict[str, list[Participant] | LiveKitError] = {
                room: RoomNotFound(room) for room in names if room not in live}
            answers.update(await self._participants_each(lk, [r for r in names if r in live], concurrency, deadline))
            return {room: answers[room] for room in names}

        return self._run(all_rooms)

    def list_rooms(self, names: Iterable[str] | None = None) -> list[RoomInfo]:
        """Active rooms (optionally only those named). Raises LiveKitUnavailable."""
        wanted = list(names or [])
        return self._run(lambda lk: self._rooms(lk, wanted))

    def delete_room(self, room: str) -> bool:
        """Delete `room`, disconnecting everyone. Idempotent: False if it was already gone."""
        from livekit.protocol.room import DeleteRoomRequest

        async def call(lk: Any) -> bool:
            try:
                await self._guard(lk.room.delete_room(DeleteRoomRequest(room=room)), room)
            except RoomNotFound:
                return False
            return True

        return self._run(call)


    async def _rooms(self, lk: Any, names: list[str]) -> list[RoomInfo]:
        from livekit.protocol.room import ListRoomsRequest

        resp = await self._guard(lk.room.list_rooms(ListRoomsRequest(names=names)), None)
        return [RoomInfo(r.sid, r.name, r.num_participants, r.creation_time) for r in resp.rooms]

    async def _participants_each(self, lk: Any, names: list[str], concurrency: int,
                                 deadline: float | None = None) -> dict[str, list[Participant] | LiveKitError]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(room: str) -> list[Participant] | LiveKitError:
            async with gate:
                try:
                    return await self._participants(lk, room)
                except LiveKitError as e:
                    return e

        if not names:
            return {}
        tasks = {room: asyncio.ensure_future(one(room)) for room in names}
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        _, late = await asyncio.wait(tasks.values(), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
        return {room: DeadlineReached(room) if task in late else task.result() for room, task in tasks.items()}

    async def _participants(self, lk: Any, room: str) -> list[Participant]:
        from livekit.protocol.models import ParticipantInfo
        from livekit.protocol.room import ListParticipantsRequest

        resp = await self._guard(lk.room.list_participants(ListParticipantsRequest(room=room)), room)
        return [
            Participant(p.sid, p.identity, p.name, ParticipantInfo.State.Name(p.state), p.joined_at)
            for p in resp.participants
        ]

    async def _guard(self, call: Awaitable[T], room: str | None) -> T:
        """Map livekit-api / aiohttp failures onto RoomNotFound and LiveKitUnavailable."""
        import aiohttp
        from livekit.api import TwirpError

        try:
            # livekit-api passes timeout=None per request, which overrides the
            # session's ClientTimeout in aiohttp, so the deadline is enforced here.
            return await asyncio.wait_for(call, self.timeout)
        except TwirpError as e:
            if e.code == "not_found" and room is not None:
                raise RoomNotFound(room) from None
            raise LiveKitUnavailable(f"LiveKit answered {e.status} {e.code}", status=e.status, code=e.code) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise LiveKitUnavailable(f"LiveKit unreachable: {type(e).__name__}") from None

    def _run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        async def main() -> T:
            import aiohttp
            from livekit import api

            # failover=False: region failover only applies to LiveKit Cloud and
            # would add backoff sleeps to a scheduled job's time budget.
            lk = api.LiveKitAPI(self.url, self.api_key, self.api_secret,
                                timeout=aiohttp.ClientTimeout(total=self.timeout), failover=False)
            try:
                return await work(lk)
            finally:
                await lk.aclose()

        return asyncio.run(main())


def list_participants(room: str) -> list[Participant]:
    return RoomService.from_settings().list_participants(room)


def list_rooms(names: Iterable[str] | None = None) -> list[RoomInfo]:
    return RoomService.from_settings().list_rooms(names)


def delete_room(room: str) -> bool:
    return RoomService.from_settings().delete_room(room)
