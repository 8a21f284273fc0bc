"""Local development settings: `.data/dev.env` and the demo identities.

Secrets for the local stack are generated once per checkout and kept in
`.data/dev-secrets.json`, so tokens printed by `nexus token` stay valid across
restarts of `make dev`. None of them is ever used outside this machine.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from pathlib import Path

from nexus.migrate import ROOT

import os

# NEXUS_DATA_DIR lets tests run a second stack beside a developer's own.
DATA_DIR = Path(os.environ.get("NEXUS_DATA_DIR") or ROOT / ".data").resolve()
DEV_ENV = DATA_DIR / "dev.env"
SECRETS = DATA_DIR / "dev-secrets.json"
# The local auth server's ES256 signing key (a private JWK), made once, so sessions and
# `nexus token` tokens stay valid across restarts.
AUTH_SIGNING_KEY = DATA_DIR / "auth-signing-key.json"
# Every demo member's password on the local auth server (dev only; README says so).
DEMO_PASSWORD = "nomadnexus-dev"
# Auth settings a developer may give `nexus dev` (e.g. SUPABASE_JWKS_URL of a project whose
# keys are asymmetric); each one given wins over the local default.
AUTH_SETTINGS = ("SUPABASE_JWKS_URL", "SUPABASE_JWT_SECRET", "SUPABASE_JWT_ISSUER", "AUTH_CLOCK_SKEW_SECONDS")
GATEWAY_PORT = 8787
PG_PORT = 54329
LIVEKIT_PORT = 7880  # and 7881 (ICE over TCP), 7882 (ICE over UDP), as LiveKit's own defaults
DEMO_NAMESPACE = uuid.UUID("5b1c8f3e-6a7d-4f3e-9d1a-2c4b6e8f0a11")
DEMO_RANKS = ("vagrant", "scout", "voyager", "founder", "pioneer")


def demo_user_id(name: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, f"demo-{name}"))


def demo_email(name: str) -> str:
    return f"{name}@nomadnexus.local"


def auth_signing_key() -> dict:
    """The local auth server's signing key, made on first use."""
    from nexus.auth_server import new_signing_jwk

    DATA_DIR.mkdir(exist_ok=True)
    if AUTH_SIGNING_KEY.exists():
        return json.loads(AUTH_SIGNING_KEY.read_text())
    key = new_signing_jwk()
    AUTH_SIGNING_KEY.write_text(json.dumps(key, indent=2))
    AUTH_SIGNING_KEY.chmod(0o600)
    return key


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _vapid_keypair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return _b64url(public), _b64url(private)


def dev_secrets() -> dict[str, str]:
    DATA_DIR.mkdir(exist_ok=True)
    if SECRETS.exists():
        return json.loads(SECRETS.read_text())
    vapid_public, vapid_private = _vapid_keypair()
    values = {
        "SUPABASE_JWT_SECRET": secrets.token_urlsafe(48),
        "LIVEKIT_API_KEY": "APIdev" + secrets.token_hex(4),
        "LIVEKIT_API_SECRET": secrets.token_urlsafe(32),
        "SUPABASE_SERVICE_ROLE_KEY": "",
        "NEXT_PUBLIC_VAPID_PUBLIC_KEY": vapid_public,
        "VAPID_PRIVATE_KEY": vapid_private,
    }
    SECRETS.write_text(json.dumps(values, indent=2))
    SECRETS.chmod(0o600)
    return values


def service_role_key(jwt_secret: str, issuer: str, role: str = "service_role") -> str:
    """A legacy API key like Supabase's `service_role` (or `anon`) key, for local use."""
    from nexus.auth_server import service_role_key as api_key

    return api_key(jwt_secret, issuer, role)


def external_livekit() -> dict[str, str] | None:
    """LIVEKIT_URL (with its key pair) from the environment: a LiveKit Cloud project instead of the local server."""
    if not os.environ.get("LIVEKIT_URL"):
        return None
    return {k: os.environ[k] for k in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET") if os.environ.get(k)}


def _flag(name: str) -> str:
    """A true/false setting passed through from the environment (false unless it says true)."""
    return "true" if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") else "false"


def dev_environment(pg_port: int = PG_PORT, gateway_port: int = GATEWAY_PORT,
                    livekit_port: int = LIVEKIT_PORT, *, auth_server: bool = False) -> dict[str, str]:
    """What the functions and clients get. With `auth_server` (Supabase's auth server runs
    behind `$SUPABASE_URL/auth/v1`), the functions verify its ES256 tokens through its JWKS;
    without, only the HS256 tokens `nexus token` signs. Auth settings given to `nexus dev`
    (AUTH_SETTINGS) win either way."""
    s = dev_secrets()
    supabase_url = f"http://127.0.0.1:{gateway_port}"
    env = {
        "NEXUS_ENV": "dev",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/postgres",
        "FUNCTIONS_URL": f"http://127.0.0.1:{gateway_port}/functions/v1",
        "SUPABASE_URL": supabase_url,
        "SUPABASE_JWKS_URL": f"{supabase_url}/auth/v1/.well-known/jwks.json" if auth_server else "off",
        "SUPABASE_JWT_SECRET": s["SUPABASE_JWT_SECRET"],
        "LIVEKIT_URL": f"ws://127.0.0.1:{livekit_port}",
        "LIVEKIT_API_KEY": s["LIVEKIT_API_KEY"],
        "LIVEKIT_API_SECRET": s["LIVEKIT_API_SECRET"],
        "NEXT_PUBLIC_VAPID_PUBLIC_KEY": s["NEXT_PUBLIC_VAPID_PUBLIC_KEY"],
        "VAPID_PRIVATE_KEY": s["VAPID_PRIVATE_KEY"],
        "VAPID_SUBJECT": "mailto:dev@nomadnexus.local",
        "CORS_ALLOW_ORIGINS": "*",
        # `LIVEKIT_PUBLISH_AFTER_JOIN_CHECK=true make dev`: strict mode (docs/livekit-access.md)
        "LIVEKIT_PUBLISH_AFTER_JOIN_CHECK": _flag("LIVEKIT_PUBLISH_AFTER_JOIN_CHECK"),
    }
    env.update({k: os.environ[k] for k in AUTH_SETTINGS if os.environ.get(k)})
    env.update(external_livekit() or {})
    issuer = f"{supabase_url}/auth/v1"
    env["SUPABASE_SERVICE_ROLE_KEY"] = service_role_key(env["SUPABASE_JWT_SECRET"], issuer)
    # What supabase-js needs for createClient(SUPABASE_URL, SUPABASE_ANON_KEY).
    env["SUPABASE_ANON_KEY"] = service_role_key(env["SUPABASE_JWT_SECRET"], issuer, "anon")
    env["NEXUS_AUTH_SERVER"] = "on" if auth_server else "off"
    return env


def write_dev_env(env: dict[str, str]) -> Path:
    DATA_DIR.mkdir(exist_ok=True)
    DEV_ENV.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    DEV_ENV.chmod(0o600)
    return DEV_ENV


def read_dev_env(path: Path = DEV_ENV) -> dict[str, str]:
    if not path.exists():
        raise SystemExit(f"{path} does not exist yet: run `make dev` first")
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def member_token(env: dict[str, str], user_id: str, ttl: int = 3600) -> str:
    """A demo member's access token signed here: with the local auth server's own ES256 key
    when it runs (verified through its JWKS, like its sessions), else with the HS256 secret."""
    import jwt

    now = int(time.time())
    claims = {
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "iss": env.get("SUPABASE_JWT_ISSUER") or f"{env['SUPABASE_URL']}/auth/v1",
        "iat": now,
        "exp": now + ttl,
        "is_anonymous": False,
    }
    if env.get("NEXUS_AUTH_SERVER") == "on" and AUTH_SIGNING_KEY.exists():
        from nexus.auth_server import sign_with

        return sign_with(auth_signing_key(), claims)
    return jwt.encode(claims, env["SUPABASE_JWT_SECRET"], algorithm="HS256")


def sign_in(env: dict[str, str], name: str) -> str:
    """A demo member's session access token from the local auth server (password sign-in)."""
    from nexus.auth_server import call

    try:
        status, body = call(env["SUPABASE_URL"] + "/auth/v1", "POST", "/token?grant_type=password",
                            {"email": demo_email(name), "password": DEMO_PASSWORD}, apikey=env["SUPABASE_ANON_KEY"],
                            timeout=10)
    except OSError as e:
        raise SystemExit(f"the local auth server at {env['SUPABASE_URL']}/auth/v1 does not answer ({e}); "
                         "is `make dev` running?") from None
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        message = body.get("msg") or body.get("error_description") if isinstance(body, dict) else body
        raise SystemExit(f"the local auth server refused {demo_email(name)}'s sign-in ({status}: {message}); "
                         "is `make dev` running?")
    return body["access_token"]
