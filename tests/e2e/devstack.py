"""`nexus dev` as a real subprocess on free ports with its own data directory,
so end-to-end tests never touch a developer's `.data/` stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEXUS = [sys.executable, "-m", "nexus"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_dev_stack(data: Path, *, livekit: bool = False, extra_env: dict[str, str] | None = None) -> Iterator[dict]:
    """Yields {origin, base, env, data, dev, log, proc}; stops the stack (and its PostgreSQL) after.

    livekit=True also starts livekit-server on free ports (only inside the loopback-only
    namespace of tests/livekit_server/, where clients may connect to it)."""
    port, pg_port = free_port(), free_port()
    env = {**os.environ, "NEXUS_DATA_DIR": str(data)}
    for key in list(env):
        if key.startswith(("LIVEKIT_", "SUPABASE_", "VAPID_")) or key == "DATABASE_URL":
            env.pop(key)
    env.update(extra_env or {})
    log = open(data / "dev.log", "wb")
    livekit_args = ["--livekit-port", "0"] if livekit else ["--no-livekit"]
    proc = subprocess.Popen([*NEXUS, "dev", "--port", str(port), "--pg-port", str(pg_port), *livekit_args],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"nexus dev exited:\n{(data / 'dev.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{origin}/functions/v1/nope", timeout=1)
            except urllib.error.HTTPError:
                break  # the gateway answers (404 for an unknown function)
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("nexus dev did not come up in 90 s")
        dev_env = dict(line.split("=", 1) for line in (data / "dev.env").read_text().splitlines() if "=" in line)
        yield {"origin": origin, "base": f"{origin}/functions/v1", "env": env, "data": data, "dev": dev_env,
               "log": data / "dev.log", "proc": proc}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def demo_token(stack: dict, *args: str) -> str:
    """`nexus token ARGS` against that stack, as a user would run it."""
    out = subprocess.run([*NEXUS, "token", *args], cwd=ROOT, env=stack["env"], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()
