"""Supabase's auth server (GoTrue) beside the functions, for `make dev` and the tests.

The project carries no code of it, no binary and no recipe that builds one: it only looks for
the binary, `NEXUS_AUTH_BIN` if set, else `$NEXUS_CACHE_DIR/bin/auth-v2.188.0` (default
`~/.cache/nomadnexus`, as for livekit-server). Supabase publishes release binaries at
https://github.com/supabase/auth/releases.

A database is prepared in Supabase's order: `prepare_database` makes the role the server
connects as (`supabase_auth_admin`) and its `auth` schema, as Supabase's Postgres image does,
then runs the server's own migrations (`auth migrate`). `AuthServer` runs it on 127.0.0.1:
email sign-up autoconfirmed, anonymous sign-ins on, access tokens signed with an ES256 key
(GOTRUE_JWT_KEYS) while the legacy HS256 secret still verifies the anon and service keys, as on
a Supabase project with asymmetric keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus import procs
from nexus.livekit_server import cache_dir, free_port

AUTH_SERVER_VERSION = "v2.188.0"
RELEASES_URL = "https://github.com/supabase/auth/releases"
AUTH_ADMIN_ROLE = "supabase_auth_admin"


class ServerUnavailable(RuntimeError):
    """No binary here, or it would not start."""


def binary_path() -> Path:
    chosen = os.environ.get("NEXUS_AUTH_BIN")
    return Path(chosen) if chosen else cache_dir() / "bin" / f"auth-{AUTH_SERVER_VERSION}"


def how_to_get() -> str:
    """One line for someone without the binary: what we look for, and where Supabase publishes it."""
    return (f"no Supabase auth server {AUTH_SERVER_VERSION} at {binary_path()} (set NEXUS_AUTH_BIN to another "
            f"path); Supabase publishes its release binaries at {RELEASES_URL}")


def find_binary() -> Path | None:
    path = binary_path()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def require_binary() -> Path:
    found = find_binary()
    if found is None:
        raise ServerUnavailable(how_to_get())
    return found


# -- keys ---------------------------------------------------------------------------------------

def _b64url(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_signing_jwk() -> dict[str, Any]:
    """A private ES256 JWK as GOTRUE_JWT_KEYS takes it (what `supabase gen signing-key` makes)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_numbers()
    return {
        "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": str(uuid.uuid4()),
        "key_ops": ["sign", "verify"], "ext": True,
        "x": _b64url(pub.x.to_bytes(32, "big")), "y": _b64url(pub.y.to_bytes(32, "big")),
        "d": _b64url(key.private_numbers().private_value.to_bytes(32, "big")),
    }


def jwt_keys(jwt_secret: str, signing: dict[str, Any], previous: list[dict[str, Any]] = ()) -> str:
    """GOTRUE_JWT_KEYS: the signing key, earlier keys that only verify (still published in the
    JWKS after a rotation), and the legacy HS256 secret (verify only, never published), so the
    anon and service_role keys signed with it keep working."""
    keys = [{"kty": "oct", "alg": "HS256", "kid": "legacy-hs256", "key_ops": ["verify"],
             "k": _b64url(jwt_secret.encode())}, signing]
    keys += [{**k, "key_ops": ["verify"]} for k in previous if k["kid"] != signing["kid"]]
    return json.dumps(keys)


def sign_with(jwk: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT signed with one of the server's own keys (tokens it cannot issue, e.g. a custom TTL)."""
    import jwt

    return jwt.encode(claims, jwt.PyJWK(jwk).key, algorithm="ES256", headers={"kid": jwk["kid"]})


# -- the database ---------------------------------------------------------------------------------

_PREPARE_SQL = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{AUTH_ADMIN_ROLE}') THEN
    CREATE ROLE {AUTH_ADMIN_ROLE} NOINHERIT CREATEROLE LOGIN NOREPLICATION;
  END IF;
END
$$;
ALTER ROLE {AUTH_ADMIN_ROLE} SET search_path = auth;
CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION {AUTH_ADMIN_ROLE};
"""


def made_by_auth_server(url: str) -> bool | None:
    """True when the auth server's migrations made `auth`, False when something else did
    (the shim), None when there is no `auth` schema yet."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regnamespace('auth') IS NULL").fetchone()[0]:
            return None
        return conn.execute("SELECT to_regclass('auth.schema_migrations') IS NOT NULL").fetchone()[0]


def role_url(url: str, role: str = AUTH_ADMIN_ROLE) -> str:
    """The database of `url` as another user, the way the auth server connects (a URL; locally
    trust authentication, so no password)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    host, port, db = params.get("host", "127.0.0.1"), params.get("port", "5432"), params.get("dbname", "postgres")
    return f"postgres://{role}@{host}:{port}/{db}?sslmode=disable"


def prepare_database(url: str, binary: Path | None = None, *, timeout: float = 300.0) -> None:
    """The role and schema Supabase's image makes, then the auth server's own migrations."""
    import psycopg

    binary = binary or require_binary()
    with psycopg.connect(url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(_PREPARE_SQL)
        conn.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO {AUTH_ADMIN_ROLE}')
    env = {**_base_env(), "DATABASE_URL": role_url(url), "GOTRUE_DB_DRIVER": "postgres", "DB_NAMESPACE": "auth",
           "API_EXTERNAL_URL": "http://127.0.0.1/auth/v1", "GOTRUE_SITE_URL": "http://localhost:3000",
           "GOTRUE_JWT_SECRET": "migrations-only-" + "x" * 32, "GOTRUE_LOG_LEVEL": "error"}
    proc = subprocess.run([str(binary), "migrate"], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ServerUnavailable(f"`auth migrate` failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}")


def _base_env() -> dict[str, str]:
    # Only what the server needs from ours: never a GOTRUE_* setting leaking in from the caller.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


# -- running it -----------------------------------------------------------------------------------

@dataclass
class AuthServer:
    """One auth server process on 127.0.0.1:`port` (0: a free one) against `database_url`.

    `external_url` is where clients reach it (`$SUPABASE_URL/auth/v1`); it is also the issuer
    of its tokens, as on Supabase.
    """

    database_url: str
    jwt_secret: str
    signing_key: dict[str, Any]
    external_url: str | None = None
    previous_keys: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    binary: Path | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.external_url or self.url

    def environment(self) -> dict[str, str]:
        env = {
            **_base_env(),
            "DATABASE_URL": role_url(self.database_url), "GOTRUE_DB_DRIVER": "postgres", "DB_NAMESPACE": "auth",
            "GOTRUE_API_HOST": "127.0.0.1", "PORT": str(self.port),
            "API_EXTERNAL_URL": self.issuer, "GOTRUE_JWT_ISSUER": self.issuer,
            "GOTRUE_SITE_URL": "http://localhost:3000", "GOTRUE_URI_ALLOW_LIST": "*",
            "GOTRUE_JWT_SECRET": self.jwt_secret,
            "GOTRUE_JWT_KEYS": jwt_keys(self.jwt_secret, self.signing_key, self.previous_keys),
            "GOTRUE_JWT_EXP": "3600", "GOTRUE_JWT_AUD": "authenticated",
            "GOTRUE_JWT_DEFAULT_GROUP_NAME": "authenticated",
            "GOTRUE_JWT_ADMIN_ROLES": "service_role,supabase_admin",
            "GOTRUE_DISABLE_SIGNUP": "false",
            "GOTRUE_EXTERNAL_EMAIL_ENABLED": "true",
            "GOTRUE_EXTERNAL_PHONE_ENABLED": "false",
            "GOTRUE_MAILER_AUTOCONFIRM": "true",
            "GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED": "true",
            # One developer, or one test session, on loopback: Supabase's per-IP limits would
            # refuse it long before anything interesting happens.
            "GOTRUE_RATE_LIMIT_ANONYMOUS_USERS": "100000", "GOTRUE_RATE_LIMIT_TOKEN_REFRESH": "100000",
            "GOTRUE_RATE_LIMIT_VERIFY": "100000", "GOTRUE_RATE_LIMIT_OTP": "100000",
            "GOTRUE_RATE_LIMIT_EMAIL_SENT": "100000",
            # supabase-js sends these; on Supabase its gateway answers CORS, here the server does.
            "GOTRUE_CORS_ALLOWED_HEADERS": "apikey,x-client-info,x-supabase-api-version",
            "GOTRUE_DB_MAX_POOL_SIZE": "10",
            "GOTRUE_LOG_LEVEL": "warn",
        }
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> "AuthServer":
        binary = self.binary or require_binary()
        self.port = self.port or free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="nexus-auth-")) / "auth.log"
        try:
            # `serve` only: the database was migrated by prepare_database, in Supabase's order.
            self.proc = procs.start([str(binary), "serve"], name="the auth server", log_path=self.log_path,
                                    ready=self.ready, timeout=timeout, env=self.environment())
        except procs.NotReady as e:
            raise ServerUnavailable(str(e)) from None
        return self

    def ready(self) -> bool:
        return procs.answers(self.url + "/health", timeout=2)

    def log_tail(self, lines: int = 40) -> str:
        return procs.log_tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        procs.stop(proc, timeout)

    def rotate(self, new_key: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sign with a new key from now on, the old one still verifying and published
        (Supabase's "rotate keys"); restarts the process on the same port."""
        new_key = new_key or new_signing_jwk()
        self.previous_keys = [self.signing_key, *self.previous_keys]
        self.signing_key = new_key
        self.stop()
        self.start()
        return new_key

    def __enter__(self) -> "AuthServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_role_key(jwt_secret: str, issuer: str, role: str = "service_role") -> str:
    """A legacy API key (HS256 with the project's JWT secret), like Supabase's anon and
    service_role keys; the auth server takes it as `apikey` and, for service_role, for /admin."""
    import jwt

    now = int(time.time())
    return jwt.encode({"role": role, "iss": issuer, "iat": now, "exp": now + 10 * 365 * 86400},
                      jwt_secret, algorithm="HS256")


def call(base_url: str, method: str, path: str, body: Any = None, *, token: str | None = None,
         apikey: str | None = None, headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One JSON request to the auth server's API (as supabase-js sends it: `apikey`, and the
    session's token or else the key as bearer); (status, parsed body or None)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", "accept": "application/json", **(headers or {})}
    if apikey:
        headers["apikey"] = apikey
    if token or apikey:
        headers["authorization"] = f"Bearer {token or apikey}"
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")
