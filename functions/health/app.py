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
- livekit: an HTTP GET to the server (its wss:// URL as https://); when it fails, `reason` says why,
  naming the server by scheme, host and port only (credentials in LIVEKIT_URL are never sent or shown);
  a LIVEKIT_URL breaking the transport rule (shared/config.py) is reported, not probed
- config: names of missing (and invalid) settings, never a value

A member's rank and brig are looked up first (`health_clearance`): a member below founder, or
in the brig, is refused before any check runs.
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
from urllib.parse import urlsplit

import jwt
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema

from shared import db
from shared.auth import authenticate, bearer_token, get_verifier
from shared.config import ConfigError, Settings, get_settings
from shared.errors import ApiError, unauthorized
from shared.http import JsonApp, Request, Response, iso_utc
from shared.lambda_adapter import lambda_handler
from shared.ranks import at_least, is_brigged

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
FINGERPRINT_FILE = MIGRATIONS_DIR.parent / "contract-fingerprint.json"
VERIFY_HINT = "Run `nexus db verify` against this database: it names every difference."
_VERSION = re.compile(r"^(\d{14})_[a-z0-9_]+\.sql$")
LIVEKIT_TIMEOUT_SECONDS = 2.0
MIN_RANK = "founder"
CONFIG_GROUPS = ("database", "auth", "livekit", "vapid")
_HTTP = {"ws": "http", "wss": "https"}


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
    # settings present but unusable (LIVEKIT_URL breaking the transport rule), by name
    invalid: SkipJsonSchema[None] | list[str] = None


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


def _clearance(user_id: str) -> None:
    """A member's rank and brig, from the database, before any of health's own work:
    403 for a member below founder or in the brig, 503 when the database cannot say."""
    unsure = ApiError("UNAVAILABLE", "The database cannot confirm your rank; retry shortly.",
                      headers={"Retry-After": "5"})
    try:
        database = db.get_database()
        try:
            clearance = database.call("health_clearance", p_user_id=user_id)
        except db.DatabaseError as e:
            if e.sqlstate not in ("42883", "PGRST202"):  # a database without 20251221000100
                raise
            member = database.call("health_snapshot", p_user_id=user_id).get("member")
            clearance = member and {"rank": member["rank"], "brigged": is_brigged(member["roles"])}
    except (ConfigError, db.DatabaseUnavailable, db.DatabaseError):
        raise unsure from None
    rank = clearance["rank"] if clearance else None
    if rank is None or not at_least(rank, MIN_RANK):
        raise ApiError("INSUFFICIENT_CLEARANCE", f"Health needs rank {MIN_RANK} or higher.",
                       {"required": MIN_RANK, "rank": rank})
    if clearance.get("brigged"):
        raise ApiError("FORBIDDEN", "You are in the brig and cannot read health.")


def _database(shipped: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(database part, snapshot or None when unreachable)."""
    try:
        database = db.get_database()
    except ConfigError:
        return {"ok": False, "error": "not configured"}, None
    started = time.perf_counter()
    try:
        if shipped is None:
            snap = database.call("health_snapshot")
        else:
            try:
                snap = database.call("health_snapshot", p_objects=shipped["objects"])
            except db.DatabaseError as e:
                if e.sqlstate not in ("42883", "PGRST202"):  # a database without 20251217000200
                    raise
                snap = database.call("health_snapshot")
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
    if settings.livekit_url_problem:
        return {"ok": False, "error": "invalid configuration",
                "reason": settings.livekit_url_problem.split(": ", 1)[1]}
    # Only the scheme, host, port and path go into the probe, and only the scheme, host and port
    # into a reason: whatever else LIVEKIT_URL holds (userinfo, a query) is never sent or shown.
    parts = urlsplit(settings.LIVEKIT_URL)  # parsed already by livekit_url_problem
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    server = f"{_HTTP.get(parts.scheme, parts.scheme)}://{host}{f':{parts.port}' if parts.port else ''}/"
    path = parts.path.strip("/")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(server + (f"{path}/" if path else ""), method="GET"),
                                    timeout=LIVEKIT_TIMEOUT_SECONDS) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code  # it answered: reachable, though not with 200
    except Exception as e:  # noqa: BLE001 - any failure is "unreachable"; its text may quote the URL
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        timeout = isinstance(reason, TimeoutError)
        why = "timed out" if timeout else (reason.strerror if isinstance(reason, OSError) and reason.strerror
                                            else type(reason).__name__)
        return {"ok": False, "error": "timeout" if timeout else "unreachable", "reason": f"{server}: {why}"}
    return {"ok": status < 500, "httpStatus": status,
            "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


def _config(settings: Settings) -> dict[str, Any]:
    missing: list[str] = []
    for group in CONFIG_GROUPS:
        try:
            settings.require(group)
        except ConfigError as e:
            # The message lists names only (shared/config.py guarantees it).
            if str(e).startswith("Missing configuration:"):
                missing += [n.strip() for n in str(e).split(":", 1)[1].split(",")]
    invalid = ["LIVEKIT_URL"] if settings.livekit_url_problem else []
    return {"ok": not missing and not invalid, "missing": missing, **({"invalid": invalid} if invalid else {})}


def health(request: Request) -> Response:
    settings = get_settings()
    token = bearer_token(request.header("authorization"))
    if not _is_service_key(token, settings):
        user_id = authenticate(get_verifier(), request.header("authorization")).user_id
        request.user_id = user_id
        _clearance(user_id)  # before any check runs: a refused caller costs one lookup

    shipped = shipped_fingerprint(settings)
    database, snap = _database(shipped)
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
