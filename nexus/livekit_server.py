"""The real LiveKit server beside the functions: built from its Go module, cached, started on demand.

    python -m nexus.livekit_server build     # build (or find) the pinned binary; prints its path
    python -m nexus.livekit_server path      # the cached binary's path, exit 1 when not built

The binary is built once per pinned version with `go install` and kept outside the checkout
(`~/.cache/nomadnexus/bin/livekit-server-<version>`, or `$NEXUS_CACHE_DIR/bin/...`), with Go's
module and build caches beside it, so a fresh clone on the same machine (what CI runs) reuses it.
Changing LIVEKIT_SERVER_VERSION builds the new one. Why v1.9.11 and not v1.10.1: docs/decisions.md.

`LiveKitServer` runs it on 127.0.0.1 with our key pair, a webhook URL and free ports, and stops it
(also when its parent dies: PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from nexus import procs

LIVEKIT_SERVER_VERSION = "v1.9.11"
GO_PACKAGE = "github.com/livekit/livekit-server/cmd/server"
# What to tell someone without Go (one line, printed by `make dev` and the test summary).
HOW_TO_GET = ("install Go >= 1.24 (https://go.dev/dl/) and rerun to build livekit-server "
              f"{LIVEKIT_SERVER_VERSION} once, or set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET "
              "to a LiveKit Cloud project")


class ServerUnavailable(RuntimeError):
    """No binary and no way to build one here (no Go, or the build failed)."""


def cache_dir() -> Path:
    return Path(os.environ.get("NEXUS_CACHE_DIR") or Path.home() / ".cache" / "nomadnexus")


def binary_path(version: str = LIVEKIT_SERVER_VERSION) -> Path:
    return cache_dir() / "bin" / f"livekit-server-{version}"


def find_go() -> str | None:
    """The `go` to build with: $NEXUS_GO if set ("none": act as if there were no Go), else PATH."""
    chosen = os.environ.get("NEXUS_GO")
    if chosen:
        return None if chosen == "none" else chosen
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def go_environment() -> dict[str, str]:
    cache = cache_dir() / "go"
    env = dict(os.environ)
    env.update({
        "GOMODCACHE": str(cache / "mod"),
        "GOCACHE": str(cache / "build"),
        "GOPATH": str(cache / "path"),
        "GOFLAGS": "-trimpath",
        # The toolchain on the machine builds it; Go never downloads another one.
        "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"),
        "CGO_ENABLED": os.environ.get("CGO_ENABLED", "0"),
    })
    return env


def ensure_binary(version: str = LIVEKIT_SERVER_VERSION, *, build: bool = True,
                  log: Callable[[str], None] | None = None) -> Path:
    """The cached binary for `version`, built first if it is missing (and `build`)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    target = binary_path(version)
    if os.access(target, os.X_OK):
        return target
    if not build:
        raise ServerUnavailable(f"livekit-server {version} is not built ({target})")
    go = find_go()
    if go is None:
        raise ServerUnavailable(f"no Go toolchain found: {HOW_TO_GET}")
    target.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(target.parent / f".build-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds at once (parallel runs) wait for one another
        if os.access(target, os.X_OK):
            return target
        _build(go, version, target, log)
    return target


def _build(go: str, version: str, target: Path, log: Callable[[str], None]) -> None:
    log(f"building livekit-server {version} with {go} (first time only, a few minutes; "
        f"cached at {target})")
    gobin = Path(tempfile.mkdtemp(prefix=f"livekit-server-{version}-", dir=target.parent))
    env = {**go_environment(), "GOBIN": str(gobin)}
    started = time.monotonic()
    proc = subprocess.Popen([go, "install", "-v", f"{GO_PACKAGE}@{version}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail: list[str] = []
    count = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if line.startswith("go: downloading"):
            continue
        count += 1
        if count % 50 == 0:
            log(f"  livekit-server build: {count} packages compiled ({time.monotonic() - started:.0f} s) ... {line}")
    code = proc.wait()
    built = gobin / "server"
    if code != 0 or not built.exists():
        shutil.rmtree(gobin, ignore_errors=True)
        raise ServerUnavailable(f"`go install {GO_PACKAGE}@{version}` failed (exit {code}):\n" + "\n".join(tail))
    os.replace(built, target)
    shutil.rmtree(gobin, ignore_errors=True)
    log(f"built livekit-server {version} in {time.monotonic() - started:.0f} s: {target}")


# -- running it -------------------------------------------------------------------------------

def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveKitServer:
    """One livekit-server process on 127.0.0.1. Port 0 means a free port."""

    api_key: str
    api_secret: str
    webhook_urls: list[str] = field(default_factory=list)
    port: int = 0
    rtc_tcp_port: int = 0
    rtc_udp_port: int = 0
    binary: Path | None = None
    log_path: Path | None = None
    log_level: str = "info"
    extra: dict = field(default_factory=dict)

    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        conf = {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "keys": {self.api_key: self.api_secret},
            "rtc": {
                "tcp_port": self.rtc_tcp_port,
                "udp_port": self.rtc_udp_port,
                # No STUN (no internet); only loopback candidates are offered.
                "use_external_ip": False,
                "node_ip": "127.0.0.1",
                "enable_loopback_candidate": True,
                "ips": {"includes": ["127.0.0.1/32"]},
            },
            "logging": {"level": self.log_level, "json": False},
        }
        if self.webhook_urls:
            conf["webhook"] = {"api_key": self.api_key, "urls": list(self.webhook_urls)}
        for key, value in self.extra.items():
            if isinstance(value, dict) and isinstance(conf.get(key), dict):
                conf[key] = {**conf[key], **value}
            else:
                conf[key] = value
        return conf

    def start(self, timeout: float = 30.0) -> "LiveKitServer":
        binary = self.binary or ensure_binary(build=False)
        self.port = self.port or free_port()
        self.rtc_tcp_port = self.rtc_tcp_port or free_port()
        self.rtc_udp_port = self.rtc_udp_port or free_port(socket.SOCK_DGRAM)
        self._dir = Path(tempfile.mkdtemp(prefix="nexus-livekit-"))
        config_file = self._dir / "livekit.yaml"
        config_file.write_text(json.dumps(self.config(), indent=2))  # YAML is a superset of JSON
        config_file.chmod(0o600)  # it holds the secret
        self.log_path = self.log_path or self._dir / "livekit.log"
        try:
            self.proc = procs.start([str(binary), "--config", str(config_file)], name="livekit-server",
                                    log_path=self.log_path, ready=self.ready, timeout=timeout)
        except procs.NotReady as e:
            self.stop()
            raise ServerUnavailable(str(e)) from None
        return self

    def ready(self) -> bool:
        return procs.answers(self.http_url + "/")

    def log_tail(self, lines: int = 40) -> str:
        return procs.log_tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        procs.stop(proc, timeout)
        if self._dir is not None:
            (self._dir / "livekit.yaml").unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self, timeout: float = 30.0) -> "LiveKitServer":
        """Stop and start again on the same ports: every room is gone."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> "LiveKitServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(api_key: str, api_secret: str, **kwargs) -> Iterator[LiveKitServer]:
    server = LiveKitServer(api_key, api_secret, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "build"
    try:
        path = ensure_binary(build=command == "build")
    except ServerUnavailable as e:
        print(f"livekit-server: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
