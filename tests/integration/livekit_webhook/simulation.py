"""A simulated LiveKit: rooms, sessions, and the webhook events they cause, with the truth.

The simulation plays out what really happens in a handful of rooms (joins,
leaves, reconnects that kick the old session with DUPLICATE_IDENTITY,
connections aborted before they became active, rooms finishing with or
without a leave for everyone still in them, and rooms restarting under the
same name). It emits the webhook events LiveKit would send and records the
truth: which sessions are still open, and when each closed one ended at
LiveKit's timestamp resolution (createdAt is in seconds).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

from tests.integration.livekit_webhook import events as ev


@dataclass
class Session:
    room: str
    identity: str
    sid: str
    joined: float
    ended: float | None = None  # createdAt (s) of the event that tells its end
    explicit: bool = False      # LiveKit sent a leave for it


def ms(t: float) -> int:
    return int(t * 1000)


class Simulation:
    def __init__(self, seed: int, rooms: int = 5, identities: int = 6, steps: int = 30):
        self.rng = random.Random(seed)
        self.events: list[dict] = []
        self.sessions: dict[str, Session] = {}
        self.tag = uuid.uuid4().hex[:6]
        start = time.time() - 3600
        for r in range(rooms):
            self._room(f"storm-{self.tag}-{r}", start + self.rng.uniform(0, 30), identities, steps)

    def _sid(self) -> str:
        return f"PA_{uuid.uuid4().hex[:12]}"

    def _room(self, name: str, t: float, identities: int, steps: int) -> None:
        rng = self.rng
        people = [f"{name}-u{i}" for i in range(identities)]
        incarnations = rng.choice([1, 2, 2, 3])
        for inc in range(incarnations):
            room_sid = f"RM_{uuid.uuid4().hex[:10]}"
            t += rng.uniform(2, 5)
            self.events.append(ev.room_event("room_started", name, room_sid, t))
            active: dict[str, Session] = {}
            for _ in range(steps):
                t += rng.uniform(0.05, 1.5)
                action = rng.choices(["join", "leave", "reconnect", "abort"], [5, 3, 2, 1])[0]
                idle = [p for p in people if p not in active]
                if action == "join" and idle:
                    self._join(name, room_sid, rng.choice(idle), t, active)
                elif action == "leave" and active:
                    self._leave(name, room_sid, active.pop(rng.choice(sorted(active))), t, "CLIENT_INITIATED")
                elif action == "reconnect" and active:
                    who = rng.choice(sorted(active))
                    # LiveKit removes the old session when the new one joins.
                    self._leave(name, room_sid, active.pop(who), t, "DUPLICATE_IDENTITY")
                    self._join(name, room_sid, who, t, active)
                elif action == "abort" and idle:
                    s = Session(name, rng.choice(idle), self._sid(), t - 0.01)
                    self.sessions[s.sid] = s
                    self._leave(name, room_sid, s, t, None, kind="participant_connection_aborted")
            last = inc == incarnations - 1
            if not last or rng.random() < 0.5:
                t += rng.uniform(1, 3)
                for s in active.values():
                    if rng.random() < 0.5:  # LiveKit's ROOM_DELETED leave, or none at all
                        self._leave(name, room_sid, s, t, "ROOM_DELETED")
                    else:
                        s.ended = t
                self.events.append(ev.room_event("room_finished", name, room_sid, t))
                t += rng.uniform(2, 4)

    def _join(self, room: str, room_sid: str, identity: str, t: float, active: dict) -> None:
        s = Session(room, identity, self._sid(), t)
        self.sessions[s.sid] = s
        active[identity] = s
        self.events.append(ev.participant_event("participant_joined", room, room_sid, identity, s.sid, t, t,
                                                metadata={"rank": self.rng.choice(["scout", "voyager"])}))

    def _leave(self, room: str, room_sid: str, s: Session, t: float, reason: str | None,
               kind: str = "participant_left") -> None:
        s.ended, s.explicit = t, True
        self.events.append(ev.participant_event(kind, room, room_sid, s.identity, s.sid, t, s.joined, reason=reason))

    def truth(self) -> dict[str, tuple]:
        """sid -> (room, identity, left_at in ms or None), at LiveKit's resolution."""
        out = {}
        for s in self.sessions.values():
            left = None if s.ended is None else max(int(s.ended) * 1000, ms(s.joined))
            out[s.sid] = (s.room, s.identity, left)
        return out


def observed(sql, tag: str) -> dict[str, tuple]:
    rows = sql.execute(
        "SELECT participant_sid, room_name, participant_identity, "
        "(extract(epoch FROM left_at) * 1000)::bigint FROM public.voice_presence WHERE room_name LIKE %s",
        (f"storm-{tag}-%",))
    return {r[0]: (r[1], r[2], r[3]) for r in rows}
