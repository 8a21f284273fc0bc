"""Test helpers shared by every suite: real database rows, real signed tokens.

Nothing here stands in for our own code: tokens are signed with real keys and
verified by the real verifier; users are real rows created through the same
auth.users trigger Supabase runs.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import jwt
import psycopg

from shared.http import call_asgi

JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256-0123456789"
SUPABASE_URL = "http://127.0.0.1:54321"
ISSUER = f"{SUPABASE_URL}/auth/v1"
LIVEKIT_KEY = "APItestkey"
LIVEKIT_SECRET = "test-livekit-secret-0123456789abcdef0123456789abcdef"
LIVEKIT_URL = "wss://livekit.test.invalid"


def sign_user_token(user_id: str, *, secret: str = JWT_SECRET, algorithm: str = "HS256",
                    headers: dict | None = None, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 3600,
        "email": f"{user_id[:8]}@example.test",
    }
    for k, v in overrides.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def unique_callsign(base: str) -> str:
    """Callsigns are unique (after NFKC and case folding) in the one database a session shares."""
    return f"{base} {uuid.uuid4().hex[:8]}"


@dataclass
class Member:
    id: str
    rank: str
    roles: list[str]
    callsign: str | None = None  # as the profile holds it

    def token(self, **overrides: Any) -> str:
        return sign_user_token(self.id, **overrides)

    def auth(self, **overrides: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(**overrides)}", "content-type": "application/json"}


class Db:
    """Direct SQL for arranging and asserting state (as the postgres owner)."""

    def __init__(self, url: str):
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: Any = None) -> list[tuple]:
        cur = self.conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def one(self, sql: str, params: Any = None) -> Any:
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    def member(self, rank: str = "scout", roles: list[str] | None = None, callsign: str | None = None) -> Member:
        uid = str(uuid.uuid4())
        meta = json.dumps({"callsign": callsign} if callsign else {})
        self.execute("INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES (%s, %s, %s::jsonb)",
                     (uid, f"{uid}@example.test", meta))
        held = self.one("UPDATE public.profiles SET rank = %s, roles = %s WHERE id = %s RETURNING callsign",
                        (rank, roles or [], uid))
        return Member(uid, rank, roles or [], held)

    def guest(self) -> str:
        """A Supabase anonymous sign-in: an auth user with is_anonymous, and (so) no profile."""
        uid = str(uuid.uuid4())
        self.execute("INSERT INTO auth.users (id, is_anonymous) VALUES (%s, true)", (uid,))
        return uid

    def net(self, join: str = "vagrant", rx: str = "vagrant", tx: str = "scout", code: str | None = None) -> str:
        code = code or f"net-{uuid.uuid4().hex[:12]}"
        self.execute(
            "INSERT INTO public.voice_nets (code, label, min_rank_to_join, min_rank_to_rx, min_rank_to_tx) "
            "VALUES (%s, %s, %s, %s, %s)", (code, f"Net {code}", join, rx, tx))
        return code

    def close(self) -> None:
        self.conn.close()


class Client:
    """Calls one function's ASGI app the way the gateway and Lambda do."""

    def __init__(self, app: Any, path: str = "/"):
        self.app = app
        self.path = path

    def request(self, method: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> "Reply":
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        status, hdrs, out = call_asgi(self.app, method, self.path, headers or {}, payload)
        return Reply(status, hdrs, out)

    def post(self, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None) -> "Reply":
        return self.request("POST", body, headers, raw)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.raw[:300]!r})"


@contextmanager
def migrated_database(pg, prefix: str, before: str | None = None) -> Iterator[str]:
    """A database of its own on the session's server, with the shim and every migration;
    dropped afterwards (for tests whose rows or schema changes must not meet others').
    With `before`, only the migrations older than that version: a database that lived before
    a change, the rest `nexus.migrate.migrate(url)` away."""
    from nexus.migrate import prepare_local

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    try:
        if before is None:
            prepare_local(url, log=lambda *_: None)
        else:
            _migrate_before(url, before)
        yield url
    finally:
        try:
            pg.drop_database(name)
        except Exception:
            pass  # a test left a connection open: the server's teardown removes it


def _migrate_before(url: str, version: str) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from nexus import migrate

    with tempfile.TemporaryDirectory(prefix="nexus-earlier-") as earlier:
        for m in migrate.discover():
            if m.version < version:
                shutil.copy(m.path, Path(earlier) / m.path.name)
        migrate.apply_shim(url)
        migrate.migrate(url, Path(earlier), log=lambda *_: None)
