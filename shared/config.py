"""Environment, validated by one model.

Each function declares the settings it needs; a missing one is reported by
name in a single startup error. Values are never printed: secrets are
`SecretStr` and the error lists names only.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator


class ConfigError(RuntimeError):
    """Configuration is missing or invalid. The message names variables, never values."""


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
    LIVEKIT_TOKEN_TTL_SECONDS: int = Field(3600, ge=60, le=86400)
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this container, read once."""
    return settings_from(dict(os.environ))
