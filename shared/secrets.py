"""Secrets from SSM Parameter Store or Secrets Manager, cached per container.

For a secret setting NAME the deployment sets one of
  NAME_SSM_PARAMETER = /nomadnexus/prod/livekit-api-secret   (SecureString)
  NAME_SECRET_ARN    = arn:aws:secretsmanager:...            (SecretString; a JSON
                       object is read at key NAME, a plain string as is)
and the value is fetched on first use and again after SECRETS_REFRESH_SECONDS:
all of a function's SSM parameters in one GetParameters call, each Secrets
Manager secret in one call. A store that does not answer (throttling, an
outage) raises SecretsUnavailable, which functions answer as 503 UNAVAILABLE
with Retry-After and try again on the next invocation. Re-reading after the
interval means a rotated secret reaches warm containers without a redeploy. Plain
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
    """A secret could not be read. The message names settings and references, never values."""


class SecretsUnavailable(SecretError):
    """The store did not answer (throttled, unreachable, timed out, 5xx): try again later.

    Anything else (a parameter that does not exist, access denied) is a
    plain SecretError: a deployment mistake that retrying will not fix.
    """


# Error codes AWS uses for "too many requests"; they come with HTTP 400.
_THROTTLING = {"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
               "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown",
               "ProvisionedThroughputExceededException"}
SSM_BATCH = 10  # GetParameters takes at most 10 names


def references(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """NAME -> ("ssm" | "secretsmanager", reference) for every configured secret reference."""
    refs: dict[str, tuple[str, str]] = {}
    for name in SECRET_NAMES:
        if environ.get(f"{name}_SSM_PARAMETER"):
            refs[name] = ("ssm", environ[f"{name}_SSM_PARAMETER"])
        elif environ.get(f"{name}_SECRET_ARN"):
            refs[name] = ("secretsmanager", environ[f"{name}_SECRET_ARN"])
    return refs


class _Failed(Exception):
    def __init__(self, reason: str, transient: bool):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class SecretCache:
    """Values by reference, fetched together: all of a function's SSM parameters in one
    GetParameters call, each Secrets Manager secret in one GetSecretValue call."""

    def __init__(self, refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic, client_factory: Callable[[str], Any] | None = None):
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._client_factory = client_factory or _boto3_client
        self._clients: dict[str, Any] = {}
        self._values: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def resolve(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Values for every referenced secret, fetched or from the cache.

        Raises SecretsUnavailable when a value never read before cannot be
        read now because the store did not answer, SecretError when one does
        not exist or may not be read. A value read before is served while a
        refresh fails, and tried again RETRY_AFTER_FAILURE_SECONDS later.
        """
        out: dict[str, str] = {}
        due: dict[str, tuple[str, str]] = {}
        for name, (kind, ref) in references(environ).items():
            cached = self._values.get((name, kind, ref))
            if cached and self.clock() - cached[1] < self.refresh_seconds:
                out[name] = cached[0]
            else:
                due[name] = (kind, ref)
        if not due:
            return out
        fetched, failed = self._fetch_all(due)
        missing: list[str] = []
        transient = False
        for name, (kind, ref) in due.items():
            key = (name, kind, ref)
            if name in fetched:
                with self._lock:
                    self._values[key] = (fetched[name], self.clock())
                out[name] = fetched[name]
                continue
            cached = self._values.get(key)
            if cached:  # keep serving the last good value if a refresh fails
                retry_at = self.clock() + min(RETRY_AFTER_FAILURE_SECONDS, self.refresh_seconds)
                with self._lock:
                    self._values[key] = (cached[0], retry_at - self.refresh_seconds)
                out[name] = cached[0]
                continue
            failure = failed[name]
            transient = transient or failure.transient
            missing.append(f"{name} ({kind} {ref}: {failure.reason})")
        if missing:
            error = SecretsUnavailable if transient else SecretError
            raise error("Secrets could not be read: " + ", ".join(missing))
        return out

    def _client(self, kind: str) -> Any:
        if kind not in self._clients:
            self._clients[kind] = self._client_factory(kind)
        return self._clients[kind]

    def _fetch_all(self, due: dict[str, tuple[str, str]]) -> tuple[dict[str, str], dict[str, _Failed]]:
        fetched: dict[str, str] = {}
        failed: dict[str, _Failed] = {}
        ssm = {name: ref for name, (kind, ref) in due.items() if kind == "ssm"}
        names = list(ssm)
        for i in range(0, len(names), SSM_BATCH):
            chunk = names[i:i + SSM_BATCH]
            try:
                values = self._ssm_values([ssm[n] for n in chunk])
            except _Failed as f:
                failed.update({n: f for n in chunk})
                continue
            for n in chunk:
                value = values.get(ssm[n])
                if value:
                    fetched[n] = value
                else:
                    failed[n] = _Failed("not found" if value is None else "empty", transient=False)
        for name, (kind, ref) in due.items():
            if kind != "secretsmanager":
                continue
            try:
                fetched[name] = self._secretsmanager_value(name, ref)
            except _Failed as f:
                failed[name] = f
        return fetched, failed

    def _ssm_values(self, refs: list[str]) -> dict[str, str]:
        """{reference: value} of the parameters SSM has; one GetParameters call."""
        try:
            resp = self._client("ssm").get_parameters(Names=list(dict.fromkeys(refs)), WithDecryption=True)
        except Exception as e:
            raise _failure(e) from None
        out: dict[str, str] = {}
        for p in resp.get("Parameters", []):
            # GetParameters answers with the name as stored; an ARN or a
            # name:version selector is echoed in Selector/ARN instead.
            for key in (p.get("Name"), p.get("ARN"), f"{p.get('Name')}{p.get('Selector') or ''}"):
                if key in refs:
                    out[key] = p.get("Value") or ""
        return out

    def _secretsmanager_value(self, name: str, ref: str) -> str:
        try:
            resp = self._client("secretsmanager").get_secret_value(SecretId=ref)
        except Exception as e:
            raise _failure(e) from None
        value = resp.get("SecretString") or ""
        if value.lstrip().startswith("{"):
            try:
                value = json.loads(value).get(name, "")
            except (ValueError, AttributeError):
                raise _Failed("not a JSON object", transient=False) from None
        if not value:
            raise _Failed("empty", transient=False)
        return value


def _failure(e: Exception) -> _Failed:
    """Classify a boto3 error; only its type and AWS error code are kept (never a value)."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):  # botocore ClientError: AWS answered
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        transient = code in _THROTTLING or status >= 500 or status == 429
        return _Failed(code or type(e).__name__, transient)
    # No answer: connection refused or reset, timeouts, DNS, credentials not yet available.
    return _Failed(type(e).__name__, transient=True)


def _boto3_client(kind: str) -> Any:
    import boto3
    from botocore.config import Config

    # boto3's defaults (60 s connect, 60 s read, retries) outlast a 10 s Lambda;
    # these give up in about 6 s, so the last good value is served instead.
    return boto3.client(kind, config=Config(connect_timeout=1, read_timeout=2,
                                            retries={"total_max_attempts": 2, "mode": "standard"}))
