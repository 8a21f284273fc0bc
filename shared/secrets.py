"""Secrets from SSM Parameter Store or Secrets Manager, cached per container.

For a secret setting NAME the deployment sets one of
  NAME_SSM_PARAMETER = /nomadnexus/prod/livekit-api-secret   (SecureString)
  NAME_SECRET_ARN    = arn:aws:secretsmanager:...            (SecretString; a JSON
                       object is read at key NAME, a plain string as is)
and the value is fetched on first use and again after SECRETS_REFRESH_SECONDS,
so a rotated secret reaches warm containers without a redeploy. Plain
environment variables still work (local runs, tests). boto3 is imported only
when a reference is configured. A secret that cannot be read is reported by
its name and reference, never by value.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Mapping

SECRET_NAMES = (
    "DATABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_JWT_SECRET",
    "LIVEKIT_API_SECRET",
    "VAPID_PRIVATE_KEY",
)
DEFAULT_REFRESH_SECONDS = 300
# After a failed refresh the last good value is served and the next fetch is
# tried this much later, so a slow or failing store costs one request, not all.
RETRY_AFTER_FAILURE_SECONDS = 30


class SecretError(RuntimeError):
    pass


def references(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """NAME -> ("ssm" | "secretsmanager", reference) for every configured secret reference."""
    refs: dict[str, tuple[str, str]] = {}
    for name in SECRET_NAMES:
        if environ.get(f"{name}_SSM_PARAMETER"):
            refs[name] = ("ssm", environ[f"{name}_SSM_PARAMETER"])
        elif environ.get(f"{name}_SECRET_ARN"):
            refs[name] = ("secretsmanager", environ[f"{name}_SECRET_ARN"])
    return refs


class SecretCache:
    def __init__(self, refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic, client_factory: Callable[[str], Any] | None = None):
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._client_factory = client_factory or _boto3_client
        self._clients: dict[str, Any] = {}
        self._values: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def resolve(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Values for every referenced secret, fetched or from the cache."""
        out: dict[str, str] = {}
        missing: list[str] = []
        for name, (kind, ref) in references(environ).items():
            key = (name, kind, ref)
            cached = self._values.get(key)
            if cached and self.clock() - cached[1] < self.refresh_seconds:
                out[name] = cached[0]
                continue
            try:
                value = self._fetch(name, kind, ref)
            except SecretError:
                if cached:  # keep serving the last good value if a refresh fails
                    retry_at = self.clock() + min(RETRY_AFTER_FAILURE_SECONDS, self.refresh_seconds)
                    with self._lock:
                        self._values[key] = (cached[0], retry_at - self.refresh_seconds)
                    out[name] = cached[0]
                    continue
                missing.append(f"{name} ({kind} {ref})")
                continue
            with self._lock:
                self._values[key] = (value, self.clock())
            out[name] = value
        if missing:
            raise SecretError("Secrets could not be read: " + ", ".join(missing))
        return out

    def _client(self, kind: str) -> Any:
        if kind not in self._clients:
            self._clients[kind] = self._client_factory(kind)
        return self._clients[kind]

    def _fetch(self, name: str, kind: str, ref: str) -> str:
        try:
            if kind == "ssm":
                resp = self._client("ssm").get_parameter(Name=ref, WithDecryption=True)
                value = resp["Parameter"]["Value"]
            else:
                resp = self._client("secretsmanager").get_secret_value(SecretId=ref)
                value = resp.get("SecretString") or ""
                if value.lstrip().startswith("{"):
                    value = json.loads(value).get(name, "")
        except Exception as e:  # botocore errors carry no secret values, but we keep only the type
            raise SecretError(type(e).__name__) from None
        if not value:
            raise SecretError("empty")
        return value


def _boto3_client(kind: str) -> Any:
    import boto3
    from botocore.config import Config

    # boto3's defaults (60 s connect, 60 s read, retries) outlast a 10 s Lambda;
    # these give up in about 6 s, so the last good value is served instead.
    return boto3.client(kind, config=Config(connect_timeout=1, read_timeout=2,
                                            retries={"total_max_attempts": 2, "mode": "standard"}))
