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
GATEWAY_PORT = 8787
PG_PORT = 54329
LIVEKIT_PORT = 7880  # and 7881 (ICE over TCP), 7882 (ICE over UDP), as LiveKit's own defaults
DEMO_NAMESPACE = uuid.UUID("5b1c8f3e-6a7d-4f3e-9d1a-2c4b6e8f0a11")
DEMO_RANKS = ("vagrant", "scout", "voyager", "founder", "pioneer")


def demo_user_id(name: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, f"demo-{name}"))


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


def service_role_key(jwt_secret: str, issuer: str) -> str:
    """A service-role JWT like Supabase's legacy `service_role` key, for local use."""
    import jwt

    now = int(time.time())
    return jwt.encode({"role": "service_role", "iss": issuer, "iat": now, "exp": now + 10 * 365 * 86400},
                      jwt_secret, algorithm="HS256")


def external_livekit() -> dict[str, str] | None:
    """LIVEKIT_URL (with its key pair) from the environment: a LiveKit Cloud project instead of the local server."""
    if not os.environ.get("LIVEKIT_URL"):
        return None
    return {k: os.environ[k] for k in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET") if os.environ.get(k)}


def _flag(name: str) -> str:
    """A true/false setting passed through from the environment (false unless it says true)."""
    return "true" if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") else "false"


def dev_environment(pg_port: int = PG_PORT, gateway_port: int = GATEWAY_PORT,
                    livekit_port: int = LIVEKIT_PORT) -> dict[str, str]:
    s = dev_secrets()
    supabase_url = f"http://127.0.0.1:{gateway_port}"
    env = {
        "NEXUS_ENV": "dev",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/postgres",
        "FUNCTIONS_URL": f"http://127.0.0.1:{gateway_port}/functions/v1",
        "SUPABASE_URL": supabase_url,
        "SUPABASE_JWKS_URL": "off",
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
    env.update(external_livekit() or {})
    env["SUPABASE_SERVICE_ROLE_KEY"] = service_role_key(s["SUPABASE_JWT_SECRET"], f"{supabase_url}/auth/v1")
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
    import jwt

    now = int(time.time())
    claims = {
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "iss": f"{env['SUPABASE_URL']}/auth/v1",
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, env["SUPABASE_JWT_SECRET"], algorithm="HS256")
