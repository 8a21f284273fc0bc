"""health: is this deployment able to serve, and does its database match?

GET with `Authorization: Bearer <token>` where the token is a founder's (or
higher) access token, or the project's service role key (the key itself, or
any HS256 JWT with `role: service_role` signed with the project's JWT
secret). Answers 200 with the parts below, or 503 UNAVAILABLE (same parts in
`details`) when the database cannot be reached:

- database: reachable, round-trip latency, which transport
- contract: migration versions applied in the database vs those shipped in
  this package (supabase/migrations/ travels in the Lambda bundle), and,
  when they agree, drift: a fingerprint of our objects per class (tables and
  columns, RLS flags, policies, functions, grants to the API roles, triggers) computed
  in the same round trip, against the fingerprint of the shipped migrations
  (supabase/contract-fingerprint.json, written by `make package`). A
  difference is `status: drift`, `drift` naming the classes, overall
  `degraded`; `nexus db verify` names each difference.
- livekit: an HTTP GET to the server (its wss:// URL as https://); when it fails, `reason` says why
- config: names of missing settings, never a value
"""

from __future__ import annotations

import hmac
import json
import re
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import jwt
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema

from shared import db
from shared.auth import authenticate, bearer_token, get_verifier
from shared.config import ConfigError, Settings, get_settings
from shared.errors import ApiError, unauthorized
from shared.http import JsonApp, Request, Response, iso_utc
from shared.lambda_adapter import lambda_handler
from shared.ranks import at_least

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
FINGERPRINT_FILE = MIGRATIONS_DIR.parent / "contract-fingerprint.json"
VERIFY_HINT = "Run `nexus db verify` against this database: it names every difference."
_VERSION = re.compile(r"^(\d{14})_[a-z0-9_]+\.sql$")
LIVEKIT_TIMEOUT_SECONDS = 2.0
MIN_RANK = "founder"
CONFIG_GROUPS = ("database", "auth", "livekit", "vapid")


# Response models: the contract in openapi.json (nexus/openapi.py); the handler builds the dicts itself.
class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    error: SkipJsonSchema[None] | str = None


class DatabasePart(_Part):
    latencyMs: SkipJsonSchema[None] | float = None
    transport: SkipJsonSchema[None] | Literal["postgres", "supabase-rpc"] = None
    serverVersion: int | None = None


class ContractPart(_Part):
    status: Literal["current", "behind", "ahead", "diverged", "drift", "unknown"]
    # match: our objects are as the migrations build them; differs: see drift;
    # unchecked: no fingerprint shipped for these migrations, or versions differ.
    fingerprint: SkipJsonSchema[None] | Literal["match", "differs", "unchecked"] = None
    drift: SkipJsonSchema[None] | list[Literal["tables", "rls", "policies", "functions", "grants",
                                                "triggers"]] = None
    verify: SkipJsonSchema[None] | str = None
    reason: SkipJsonSchema[None] | str = None
    shipped: SkipJsonSchema[None] | int = None
    applied: SkipJsonSchema[None] | int = None
    latestShipped: str | None = None
    latestApplied: str | None = None
    pending: SkipJsonSchema[None] | list[str] = None
    unknown: SkipJsonSchema[None] | list[str] = None


class LiveKitPart(_Part):
    reason: SkipJsonSchema[None] | str = None
    httpStatus: SkipJsonSchema[None] | int = None
    latencyMs: SkipJsonSchema[None] | float = None


class ConfigPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    missing: list[str]


class HealthReport(BaseModel):
    """The 200 body; the 503's `details` has the same parts with status "down"."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "degraded"]
    checkedAt: datetime
    database: DatabasePart
    contract: ContractPart
    livekit: LiveKitPart
    config: ConfigPart


_shipped_cache: dict[tuple[Path, int], list[str]] = {}


def shipped_versions(directory: Path | None = None) -> list[str] | None:
    # Listed once per directory state: the folder's mtime changes when a file
    # is added or removed, so a warm container does not re-list it per call.
    directory = directory or MIGRATIONS_DIR
    try:
        key = (directory, directory.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _shipped_cache:
        if not directory.is_dir():
            return None
        _shipped_cache.clear()
        _shipped_cache[key] = sorted(m.group(1) for p in directory.iterdir() if (m := _VERSION.match(p.name)))
    return list(_shipped_cache[key])


_fingerprint_cache: dict[tuple[str, int], dict[str, Any] | None] = {}


def shipped_fingerprint(settings: Settings) -> dict[str, Any] | None:
    """The shipped migrations' fingerprint, if one was shipped for exactly these migrations."""
    path = Path(settings.CONTRACT_FINGERPRINT_FILE) if settings.CONTRACT_FINGERPRINT_FILE else FINGERPRINT_FILE
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _fingerprint_cache:
        try:
            doc = json.loads(path.read_text())
            usable = (isinstance(doc, dict) and isinstance(doc.get("classes"), dict)
                      and isinstance(doc.get("objects"), dict))
        except (OSError, ValueError):
            usable = False
        _fingerprint_cache.clear()
        _fingerprint_cache[key] = doc if usable else None
    doc = _fingerprint_cache[key]
    return doc if doc is not None and doc.get("versions") == shipped_versions() else None


def _is_service_key(token: str, settings: Settings) -> bool:
    key = settings.SUPABASE_SERVICE_ROLE_KEY
    if key and hmac.compare_digest(token.encode(), key.get_secret_value().encode()):
        return True
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False
    if not isinstance(unverified, dict) or unverified.get("role") != "service_role":
        return False
    # From here the token claims to be the service role: it must prove it.
    secret = settings.SUPABASE_JWT_SECRET
    if header.get("alg") != "HS256" or not secret:
        raise unauthorized("The service role token is not signed with this project's secret.")
    try:
        jwt.decode(token, secret.get_secret_value(), algorithms=["HS256"],
                   options={"require": ["exp", "role"], "verify_aud": False})
    except jwt.PyJWTError:
        raise unauthorized("The service role token is invalid or expired.") from None
    return True


def _database(user_id: str | None, shipped: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(database part, snapshot or None when unreachable)."""
    try:
        database = db.get_database()
    except ConfigError:
        return {"ok": False, "error": "not configured"}, None
    started = time.perf_counter()
    try:
        if shipped is None:
            snap = database.call("health_snapshot", p_user_id=user_id)
        else:
            try:
                snap = database.call("health_snapshot", p_user_id=user_id, p_objects=shipped["objects"])
            except db.DatabaseError as e:
                if e.sqlstate not in ("42883", "PGRST202"):  # a database without 20251217000200
                    raise
                snap = database.call("health_snapshot", p_user_id=user_id)
    except db.DatabaseUnavailable:
        return {"ok": False, "error": "unreachable"}, None
    except db.DatabaseError as e:
        snap, error = None, f"health_snapshot failed ({e.sqlstate}); is the latest migration applied?"
    else:
        error = None
    part = {"ok": True, "latencyMs": round((time.perf_counter() - started) * 1000, 1),
            "transport": "postgres" if isinstance(database, db.PsycopgTransport) else "supabase-rpc"}
    if snap:
        part["serverVersion"] = snap.get("server_version")
    if error:
        part["error"] = error
    return part, snap


def _contract(database: dict[str, Any], snap: dict[str, Any] | None,
              fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    shipped = shipped_versions()
    applied = snap.get("applied") if snap else None
    if shipped is None:
        return {"ok": False, "status": "unknown", "reason": "no migrations shipped in this package"}
    if applied is None:
        reason = ("database unreachable" if not database["ok"] else "health_snapshot unavailable"
                  if snap is None else "no migration history in the database")
        return {"ok": False, "status": "unknown", "reason": reason}
    pending = sorted(set(shipped) - set(applied))
    unknown = sorted(set(applied) - set(shipped))
    status = "current" if not pending and not unknown else "behind" if not unknown else "ahead" if not pending else "diverged"
    part = {"ok": status == "current", "status": status, "shipped": len(shipped), "applied": len(applied),
            "latestShipped": shipped[-1] if shipped else None, "latestApplied": max(applied, default=None),
            "pending": pending, "unknown": unknown}
    live = snap.get("fingerprint") if snap else None
    if status != "current" or fingerprint is None or not isinstance(live, dict):
        part["fingerprint"] = "unchecked"
        return part
    drift = [c for c in sorted(fingerprint["classes"]) if live.get(c) != fingerprint["classes"][c]]
    part["fingerprint"] = "differs" if drift else "match"
    if drift:
        part.update(ok=False, status="drift", drift=drift, verify=VERIFY_HINT)
    return part


def _livekit(settings: Settings) -> dict[str, Any]:
    if not settings.LIVEKIT_URL:
        return {"ok": False, "error": "not configured"}
    url = re.sub(r"^ws(s?)://", r"http\1://", settings.LIVEKIT_URL) + "/"
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"),
                                    timeout=LIVEKIT_TIMEOUT_SECONDS) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code  # it answered: reachable, though not with 200
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return {"ok": False, "error": "timeout" if "timed out" in str(reason) else "unreachable",
                "reason": _without_credentials(url, f"{url}: {why}")}
    return {"ok": status < 500, "httpStatus": status,
            "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


def _without_credentials(url: str, text: str) -> str:
    """`text` with the URL's userinfo and query taken out (LiveKit's URL may carry them; health never shows them)."""
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    authority, _, tail = rest.partition("/")
    userinfo, _, host = authority.rpartition("@")
    path = tail.split("?", 1)[0].split("#", 1)[0]
    safe = f"{scheme}://{host}/{path}" if scheme else f"{host}/{path}"
    text = text.replace(url, safe)
    for secret in (userinfo, *userinfo.split(":", 1), tail[len(path):]):
        if secret:
            text = text.replace(secret, "***")
    return text


def _config(settings: Settings) -> dict[str, Any]:
    missing: list[str] = []
    for group in CONFIG_GROUPS:
        try:
            settings.require(group)
        except ConfigError as e:
            # The message lists names only (shared/config.py guarantees it).
            missing += [n.strip() for n in str(e).split(":", 1)[1].split(",")]
    return {"ok": not missing, "missing": missing}


def health(request: Request) -> Response:
    settings = get_settings()
    token = bearer_token(request.header("authorization"))
    user_id = None
    if not _is_service_key(token, settings):
        user_id = authenticate(get_verifier(), request.header("authorization")).user_id
        request.user_id = user_id

    shipped = shipped_fingerprint(settings)
    database, snap = _database(user_id, shipped)
    if user_id is not None:
        if snap is None:
            # Without the snapshot a member's rank is unknown: no report for them.
            raise ApiError("UNAVAILABLE", "The database cannot confirm your rank; retry shortly.",
                           headers={"Retry-After": "5"})
        member = snap.get("member")
        if member is None or not at_least(member["rank"], MIN_RANK):
            raise ApiError("INSUFFICIENT_CLEARANCE", f"Health needs rank {MIN_RANK} or higher.",
                           {"required": MIN_RANK, "rank": member["rank"] if member else None})

    parts = {"database": database, "contract": _contract(database, snap, shipped), "livekit": _livekit(settings),
             "config": _config(settings)}
    report = {"status": "ok" if all(p["ok"] for p in parts.values()) else "degraded",
              "checkedAt": iso_utc(int(time.time())), **parts}
    if not database["ok"]:
        raise ApiError("UNAVAILABLE", "The database is unavailable.", {**report, "status": "down"},
                       headers={"Retry-After": "5"})
    return Response(200, report)


app = JsonApp("health", {"GET": health}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app)
