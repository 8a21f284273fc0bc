"""Real LiveKit participants for tests: the `livekit` package's native WebRTC client.

    async with joined(url, token) as alice, joined(url, token2) as bob:
        await alice.publish_microphone()
        await bob.wait_track(alice.identity)            # the server forwarded it
        await alice.send_data(b"hi"); await bob.wait_data(b"hi")

Everything is async (the SDK is asyncio); run a scenario with the `lk_call` fixture.
`livekit.rtc` is imported on first use, so collecting a test module never needs it.
Only use these inside the loopback-only namespace (tests/livekit_server/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

SAMPLE_RATE = 48000
FRAME_SAMPLES = 480  # 10 ms


def rtc():
    from livekit import rtc as _rtc

    return _rtc


class Refused(Exception):
    """The server (or the SDK on the server's word) refused what was asked."""


@dataclass
class Participant:
    room: Any
    identity: str
    tracks: dict[str, list] = field(default_factory=dict)  # publisher identity -> [(track, publication)]
    data: list[tuple[str | None, bytes]] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    disconnect_reason: Any = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _pumps: list[asyncio.Task] = field(default_factory=list)

    def _on_track(self, track, publication, participant) -> None:
        self.tracks.setdefault(participant.identity, []).append((track, publication))
        self._changed.set()

    def _on_data(self, packet) -> None:
        sender = packet.participant.identity if packet.participant else None
        self.data.append((sender, bytes(packet.data)))
        self._changed.set()

    def _on_disconnected(self, reason) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()
        self._changed.set()

    async def _until(self, check, timeout: float) -> Any:
        async def wait() -> Any:
            while True:
                found = check()
                if found:
                    return found
                self._changed.clear()
                await self._changed.wait()
        return await asyncio.wait_for(wait(), timeout)

    # -- publishing ---------------------------------------------------------------------------

    async def publish_microphone(self, tone_hz: float = 440.0):
        """Publish a microphone track that keeps sending a tone; returns the publication."""
        r = rtc()
        source = r.AudioSource(SAMPLE_RATE, 1)
        track = r.LocalAudioTrack.create_audio_track("microphone", source)
        publication = await self._publish(track, r.TrackSource.SOURCE_MICROPHONE)
        self._pumps.append(asyncio.create_task(_pump_tone(source, tone_hz)))
        return publication

    async def publish_camera(self):
        r = rtc()
        source = r.VideoSource(320, 240)
        track = r.LocalVideoTrack.create_video_track("camera", source)
        return await self._publish(track, r.TrackSource.SOURCE_CAMERA, video_source=source)

    async def publish_screen_share(self):
        r = rtc()
        source = r.VideoSource(320, 240, is_screencast=True)
        track = r.LocalVideoTrack.create_video_track("screen", source)
        return await self._publish(track, r.TrackSource.SOURCE_SCREENSHARE, video_source=source)

    async def _publish(self, track, source, video_source=None, timeout: float = 15.0):
        from livekit.rtc.participant import PublishTrackError

        r = rtc()
        if video_source is not None:
            self._pumps.append(asyncio.create_task(_pump_video(video_source)))
        options = r.TrackPublishOptions()
        options.source = source
        try:
            return await asyncio.wait_for(self.room.local_participant.publish_track(track, options), timeout)
        except PublishTrackError as e:
            raise Refused(str(e)) from e
        except asyncio.TimeoutError as e:
            raise Refused(f"no answer to the publish in {timeout:.0f} s") from e

    async def send_data(self, payload: bytes, topic: str = "test") -> None:
        from livekit.rtc.participant import PublishDataError

        try:
            await self.room.local_participant.publish_data(payload, reliable=True, topic=topic)
        except PublishDataError as e:
            raise Refused(str(e)) from e

    # -- receiving ----------------------------------------------------------------------------

    async def wait_track(self, publisher: str, timeout: float = 15.0):
        """The first track subscribed from `publisher` (the server forwarded it)."""
        found = await self._until(lambda: self.tracks.get(publisher), timeout)
        return found[0]

    async def wait_audio(self, publisher: str, timeout: float = 15.0) -> float:
        """RMS of the first non-silent audio frame received from `publisher`'s track."""
        track, _ = await self.wait_track(publisher, timeout)
        stream = rtc().AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        try:
            async def first_loud() -> float:
                async for event in stream:
                    samples = memoryview(event.frame.data).cast("h") if not isinstance(event.frame.data, memoryview) \
                        else event.frame.data
                    values = list(samples)
                    rms = math.sqrt(sum(v * v for v in values) / max(1, len(values)))
                    if rms > 100:
                        return rms
                return 0.0
            return await asyncio.wait_for(first_loud(), timeout)
        finally:
            await stream.aclose()

    async def wait_data(self, payload: bytes, timeout: float = 15.0) -> str | None:
        """Wait until `payload` arrives; returns its sender's identity."""
        found = await self._until(lambda: [s for s, d in self.data if d == payload], timeout)
        return found[0]

    async def leave(self) -> None:
        for task in self._pumps:
            task.cancel()
        self._pumps.clear()
        with contextlib.suppress(Exception):
            await self.room.disconnect()


async def connect(url: str, token: str, *, auto_subscribe: bool = True, timeout: float = 15.0) -> Participant:
    """Join with `token`; returns once the client is connected (signal and media transport)."""
    r = rtc()
    room = r.Room()
    participant = Participant(room=room, identity="")
    room.on("track_subscribed", participant._on_track)
    room.on("data_received", participant._on_data)
    room.on("disconnected", participant._on_disconnected)
    try:
        await asyncio.wait_for(room.connect(url, token, r.RoomOptions(auto_subscribe=auto_subscribe)), timeout)
    except r.ConnectError as e:
        raise Refused(str(e)) from e
    except asyncio.TimeoutError as e:
        with contextlib.suppress(Exception):
            await room.disconnect()
        raise Refused(f"not connected within {timeout:.0f} s") from e
    participant.identity = room.local_participant.identity
    return participant


@contextlib.asynccontextmanager
async def joined(url: str, token: str, **kwargs) -> AsyncIterator[Participant]:
    participant = await connect(url, token, **kwargs)
    try:
        yield participant
    finally:
        await participant.leave()


async def _pump_tone(source, hz: float) -> None:
    r = rtc()
    phase = 0
    step = 2 * math.pi * hz / SAMPLE_RATE
    while True:
        frame = r.AudioFrame.create(SAMPLE_RATE, 1, FRAME_SAMPLES)
        samples = [int(8000 * math.sin(step * (phase + i))) for i in range(FRAME_SAMPLES)]
        phase += FRAME_SAMPLES
        frame.data[:] = memoryview(struct.pack(f"<{FRAME_SAMPLES}h", *samples)).cast("h")
        await source.capture_frame(frame)


async def _pump_video(source) -> None:
    r = rtc()
    buffer = bytearray(320 * 240 * 4)
    while True:
        frame = r.VideoFrame(320, 240, r.VideoBufferType.RGBA, buffer)
        source.capture_frame(frame)
        await asyncio.sleep(0.1)


# -- the server's own view (RoomService) ------------------------------------------------------

async def room_service(url: str, api_key: str, api_secret: str, call: str, **request: Any):
    """One RoomService call with livekit-api, e.g. room_service(url, k, s, "list_rooms", names=[...])."""
    from livekit import api
    from livekit.protocol import room as proto_room

    requests = {"list_rooms": proto_room.ListRoomsRequest, "list_participants": proto_room.ListParticipantsRequest,
                "delete_room": proto_room.DeleteRoomRequest, "remove_participant": proto_room.RoomParticipantIdentity}
    lk = api.LiveKitAPI(url, api_key, api_secret)
    try:
        return await getattr(lk.room, call)(requests[call](**request))
    finally:
        await lk.aclose()
