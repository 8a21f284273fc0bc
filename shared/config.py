"""Environment, validated by one model.

Each function declares the settings it needs; a missing one is reported by
name in a single startup error. Values are never printed: secrets are
`SecretStr` and the error lists names only.

Secrets may come from SSM Parameter Store or Secrets Manager instead of the
environment (`NAME_SSM_PARAMETER` / `NAME_SECRET_ARN`, see shared/secrets.py):
the settings are then rebuilt with the fetched values, re-fetched after
SECRETS_REFRESH_SECONDS, and whatever was built from the old values (the
token verifier, the database connection) is rebuilt when one changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from shared.errors import ApiError

log = logging.getLogger("nexus.config")


class ConfigError(RuntimeError):
    """Configuration is missing or invalid. The message names variables, never values."""


# Hosts a plain ws:// or http:// URL may name outside dev (nothing leaves the machine).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LIVEKIT_URL_RULE = ("Invalid configuration: LIVEKIT_URL must be a wss:// or https:// URL "
                    "(ws:// or http:// only to a loopback host, or with NEXUS_ENV=dev)")


def trusted_transport(url: str, secure: tuple[str, ...] = ("https",), plain: tuple[str, ...] = ("http",)) -> bool:
    """`url` uses a `secure` scheme, or a `plain` one to a loopback host; False if it is no URL."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        return False
    if not host:
        return False
    return parts.scheme in secure or (parts.scheme in plain and host in LOOPBACK_HOSTS)


# Seconds a caller is asked to wait when the secret store did not answer.
SECRETS_RETRY_AFTER_SECONDS = 5


class SecretsUnavailable(ApiError):
    """The secret store (SSM, Secrets Manager) did not answer and no value was read before.

    An ApiError, so every function answers it as the shared 503 UNAVAILABLE
    envelope with Retry-After; nothing is cached, so the next invocation
    tries again. `reason` (names and references, never values) is for logs.
    """

    def __init__(self, reason: str):
        super().__init__("UNAVAILABLE", "Configuration could not be read from the secret store; retry shortly.",
                         headers={"Retry-After": str(SECRETS_RETRY_AFTER_SECONDS)})
        self.reason = reason


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    NEXUS_ENV: Literal["production", "dev"] = "production"

    # Database: psycopg straight to Postgres, or the supabase RPC transport.
    DATABASE_URL: SecretStr | None = None
    SUPABASE_URL: str | None = None
    SUPABASE_SERVICE_ROLE_KEY: SecretStr | None = None

    # Supabase Auth verification: the legacy HS256 secret and/or JWKS.
    SUPABASE_JWT_SECRET: SecretStr | None = None
    SUPABASE_JWT_ISSUER: str | None = None
    SUPABASE_JWKS_URL: str | None = None
    AUTH_CLOCK_SKEW_SECONDS: int = Field(30, ge=0, le=300)

    LIVEKIT_URL: str | None = None
    LIVEKIT_API_KEY: str | None = None
    LIVEKIT_API_SECRET: SecretStr | None = None
    # Tokens LiveKit refreshes for connected participants last 10 minutes; ours no longer, so a
    # token kept past a brig or a demotion buys at most that (docs/livekit-access.md).
    LIVEKIT_TOKEN_TTL_SECONDS: int = Field(600, ge=60, le=86400)
    # Strict mode: every token we mint (livekit-token, academy-accept) carries no publish or data
    # right; RoomService grants them once the webhook's join check has passed.
    LIVEKIT_PUBLISH_AFTER_JOIN_CHECK: bool = False
    # livekit-webhook, its retry worker and the stale-presence reconciler.
    LIVEKIT_API_TIMEOUT_SECONDS: float = Field(5.0, gt=0, le=60)
    LIVEKIT_WEBHOOK_MAX_BODY_BYTES: int = Field(262144, ge=4096, le=4194304)
    WEBHOOK_WORKER_BATCH: int = Field(100, ge=1, le=1000)
    WEBHOOK_JOB_VISIBILITY_SECONDS: int = Field(120, ge=10, le=3600)
    WEBHOOK_DONE_RETENTION_HOURS: int = Field(72, ge=1, le=8760)
    PRESENCE_RECONCILE_AFTER_SECONDS: int = Field(600, ge=30, le=86400)
    PRESENCE_MAX_AGE_SECONDS: int = Field(43200, ge=600, le=604800)
    # academy-request, academy-accept and the sim-pod expiry schedule.
    SIM_POD_TTL_SECONDS: int = Field(7200, ge=60, le=86400)
    ACADEMY_REQUEST_MAX_AGE_SECONDS: int = Field(86400, ge=60, le=2592000)
    # At most this many new academy requests per member per window (each pages every certified guide).
    ACADEMY_REQUEST_RATE_LIMIT: int = Field(3, ge=1, le=1000)
    ACADEMY_REQUEST_RATE_WINDOW_SECONDS: int = Field(600, ge=1, le=604800)
    SIM_POD_EXPIRY_BATCH: int = Field(50, ge=1, le=500)

    NEXT_PUBLIC_VAPID_PUBLIC_KEY: str | None = None
    VAPID_PRIVATE_KEY: SecretStr | None = None
    VAPID_SUBJECT: str | None = None
    # notifications-subscribe, handle-rescue-request and the push fan-out.
    PUSH_MAX_DEVICES_PER_USER: int = Field(10, ge=1, le=100)
    FLARE_RATE_LIMIT_SECONDS: int = Field(60, ge=1, le=86400)
    PUSH_FANOUT_CONCURRENCY: int = Field(16, ge=1, le=128)
    PUSH_FANOUT_BATCH: int = Field(64, ge=1, le=1000)
    # A claimed delivery not reported within this is re-claimed by another worker.
    PUSH_LEASE_SECONDS: int = Field(60, ge=5, le=900)
    PUSH_MAX_ATTEMPTS: int = Field(8, ge=1, le=50)
    PUSH_RETRY_BASE_SECONDS: float = Field(15.0, ge=0, le=3600)
    PUSH_RETRY_MAX_SECONDS: float = Field(3600.0, ge=1, le=86400)
    PUSH_CONNECT_TIMEOUT_SECONDS: float = Field(3.05, gt=0, le=30)
    PUSH_READ_TIMEOUT_SECONDS: float = Field(10.0, gt=0, le=60)
    PUSH_TTL_SECONDS: int = Field(86400, ge=0, le=2419200)
    PUSH_HIGH_URGENCY_TTL_SECONDS: int = Field(3600, ge=0, le=2419200)
    # handle-rescue-request delivers its own flare inline for at most this long
    # (0: leave it to the fan-out schedule).
    PUSH_INLINE_BUDGET_SECONDS: float = Field(3.0, ge=0, le=20)
    # member-admin applies its own change to LiveKit inline for at most this
    # long (0: leave it to the livekit-access-sync schedule); the webhook's
    # join correction uses the same budget. Failed jobs back off up to the max.
    LIVEKIT_ACCESS_INLINE_BUDGET_SECONDS: float = Field(2.0, ge=0, le=10)
    LIVEKIT_ACCESS_SYNC_BATCH: int = Field(50, ge=1, le=500)
    LIVEKIT_ACCESS_RETRY_BASE_SECONDS: int = Field(5, ge=1, le=300)
    LIVEKIT_ACCESS_RETRY_MAX_SECONDS: int = Field(60, ge=1, le=3600)
    # push-fanout forgets finished deliveries, and notifications read or
    # finished, older than this.
    PUSH_RETENTION_DAYS: int = Field(30, ge=1, le=3650)

    # How long fetched secrets are trusted before they are read again (rotation).
    SECRETS_REFRESH_SECONDS: int = Field(300, ge=0, le=86400)

    # health: the fingerprint of the shipped migrations (nexus/dbtools/fingerprint.py);
    # default: supabase/contract-fingerprint.json in the bundle, written by `make package`.
    CONTRACT_FINGERPRINT_FILE: str | None = None

    MAX_BODY_BYTES: int = Field(16384, ge=1024, le=1048576)
    # CORS is configured on the Function URL in AWS; this is for the local gateway.
    CORS_ALLOW_ORIGINS: str | None = None

    @field_validator("SUPABASE_URL", "LIVEKIT_URL")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @property
    def dev_mode(self) -> bool:
        return self.NEXUS_ENV == "dev"

    @property
    def jwt_issuer(self) -> str | None:
        if self.SUPABASE_JWT_ISSUER:
            return self.SUPABASE_JWT_ISSUER
        return f"{self.SUPABASE_URL}/auth/v1" if self.SUPABASE_URL else None

    @property
    def jwks_url(self) -> str | None:
        if self.SUPABASE_JWKS_URL == "off":  # legacy HS256-only projects
            return None
        if self.SUPABASE_JWKS_URL:
            return self.SUPABASE_JWKS_URL
        return f"{self.SUPABASE_URL}/auth/v1/.well-known/jwks.json" if self.SUPABASE_URL else None

    @property
    def livekit_server_url(self) -> str | None:
        """LIVEKIT_URL without its userinfo: what members are told to connect to (serverUrl) and
        what RoomService is called at. Credentials in LIVEKIT_URL are never handed out (health
        keeps them out of its answers too)."""
        from urllib.parse import urlsplit

        url = self.LIVEKIT_URL
        if not url or "@" not in url:
            return url
        try:
            netloc = urlsplit(url).netloc
        except ValueError:
            return url  # livekit_url_problem refuses it before anyone is told it
        start = url.find("//") + 2
        if start < 2 or not url.startswith(netloc, start):
            return url
        return url[:start] + netloc.rpartition("@")[2] + url[start + len(netloc):]

    @property
    def livekit_url_problem(self) -> str | None:
        """LIVEKIT_URL_RULE when LIVEKIT_URL is set and breaks it. RoomService calls carry
        room-admin tokens: outside dev they go over TLS unless LiveKit is on this machine."""
        url = self.LIVEKIT_URL
        if not url:
            return None
        if self.dev_mode:
            ok = trusted_transport(url, secure=("wss", "https", "ws", "http"))
        else:
            ok = trusted_transport(url, secure=("wss", "https"), plain=("ws", "http"))
        return None if ok else LIVEKIT_URL_RULE

    def require(self, *groups: str) -> "Settings":
        """Check that the settings a function needs are present.

        groups: "database", "auth", "livekit", "vapid".
        """
        missing: list[str] = []
        for group in groups:
            if group == "database":
                if not self.DATABASE_URL and not (self.SUPABASE_URL and self.SUPABASE_SERVICE_ROLE_KEY):
                    missing.append("DATABASE_URL (or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY)")
            elif group == "auth":
                if not self.SUPABASE_JWT_SECRET and not self.jwks_url:
                    missing.append("SUPABASE_JWT_SECRET or SUPABASE_URL (for JWKS)")
                if not self.jwt_issuer:
                    missing.append("SUPABASE_URL (or SUPABASE_JWT_ISSUER)")
            elif group == "livekit":
                for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
                    if not getattr(self, name):
                        missing.append(name)
            elif group == "vapid":
                for name in ("NEXT_PUBLIC_VAPID_PUBLIC_KEY", "VAPID_PRIVATE_KEY", "VAPID_SUBJECT"):
                    if not getattr(self, name):
                        missing.append(name)
            else:
                raise ValueError(f"unknown settings group {group}")
        if missing:
            raise ConfigError("Missing configuration: " + ", ".join(missing))
        if "livekit" in groups and self.livekit_url_problem:
            raise ConfigError(self.livekit_url_problem)
        return self


# The runbook names some variables differently; both spellings are accepted.
_ALIASES = {
    "SUPABASE_SERVICE_KEY": "SUPABASE_SERVICE_ROLE_KEY",
    # LiveKit signs webhooks with the API secret; the runbook's
    # LIVEKIT_WEBHOOK_SECRET can only ever name that same secret.
    "LIVEKIT_WEBHOOK_SECRET": "LIVEKIT_API_SECRET",
}


def settings_from(environ: dict[str, str]) -> Settings:
    values = {k: v for k, v in environ.items() if k in Settings.model_fields and v != ""}
    for alias, name in _ALIASES.items():
        if environ.get(alias) and name not in values:
            values[name] = environ[alias]
    try:
        return Settings(**values)
    except ValidationError as e:
        names = sorted({str(err["loc"][0]) for err in e.errors() if err["loc"]})
        raise ConfigError("Invalid configuration: " + ", ".join(names)) from None


class _Loaded:
    __slots__ = ("settings", "refresh_at")

    def __init__(self, settings: Settings, refresh_at: float | None):
        self.settings = settings
        self.refresh_at = refresh_at  # monotonic time to re-read secrets; None: nothing to re-read


_loaded: _Loaded | None = None
_load_lock = threading.Lock()
_secret_cache = None  # shared.secrets.SecretCache, made when a reference is first seen
_on_rotation: list[Callable[[Settings, Settings], None]] = []
_clock: Callable[[], float] = time.monotonic  # a module global so tests can drive it


def get_settings() -> Settings:
    """Settings for this container: read once, secrets re-read after their refresh interval."""
    loaded = _loaded
    if loaded is not None and (loaded.refresh_at is None or _clock() < loaded.refresh_at):
        return loaded.settings
    return _load()


def _load() -> Settings:
    global _loaded, _secret_cache
    with _load_lock:
        previous = _loaded
        if previous is not None and (previous.refresh_at is None or _clock() < previous.refresh_at):
            return previous.settings  # another thread loaded while we waited
        from shared import secrets  # stdlib only; boto3 is imported only to fetch

        environ = dict(os.environ)
        refs = secrets.references(environ)
        if not refs:
            _loaded = _Loaded(settings_from(environ), None)
            return _loaded.settings
        refresh = _refresh_seconds(environ)
        if _secret_cache is None or _secret_cache.refresh_seconds != refresh:
            _secret_cache = secrets.SecretCache(refresh_seconds=refresh, clock=lambda: _clock())
        try:
            values = _secret_cache.resolve(environ)
        except secrets.SecretsUnavailable as e:
            # Not remembered: the next call (the next invocation) asks the store again.
            log.warning("secret store unavailable: %s", e)  # names and references, never values
            raise SecretsUnavailable(str(e)) from None
        except secrets.SecretError as e:
            raise ConfigError(str(e)) from None  # names and references, never values
        settings = settings_from({**environ, **values})
        old = previous.settings if previous is not None else None
        if old is not None and old == settings:
            settings = old  # same values: keep the object, so nothing built from it is rebuilt
        _loaded = _Loaded(settings, _clock() + refresh)
    if old is not None and settings is not old:
        for callback in list(_on_rotation):
            callback(old, settings)
    return settings


def _refresh_seconds(environ: dict[str, str]) -> int:
    raw = environ.get("SECRETS_REFRESH_SECONDS") or "300"
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError("Invalid configuration: SECRETS_REFRESH_SECONDS") from None
    if not 0 <= value <= 86400:
        raise ConfigError("Invalid configuration: SECRETS_REFRESH_SECONDS")
    return value


def on_rotation(callback: Callable[[Settings, Settings], None]) -> None:
    """Call `callback(old, new)` when re-read secrets changed the settings, to drop what was built from old."""
    if callback not in _on_rotation:
        _on_rotation.append(callback)


def _reset() -> None:
    """Forget loaded settings and cached secrets (tests change the environment between cases)."""
    global _loaded, _secret_cache
    with _load_lock:
        _loaded = None
        _secret_cache = None


# The lru_cache-era name, which tests and tools call after changing the environment.
get_settings.cache_clear = _reset  # type: ignore[attr-defined]
