"""The packages as Lambda runs them: AWS's Runtime Interface Emulator, awslambdaric, a read-only sandbox.

    python -m nexus.lambda_emulator build    # build (or find) the pinned emulator; prints its path
    python -m nexus.lambda_emulator path     # the cached binary's path, exit 1 when not built

The emulator (github.com/aws/aws-lambda-runtime-interface-emulator, AWS's own, the one
in Lambda's base images) is built once with Go from its module, with progress, and
cached beside livekit-server (`~/.cache/nomadnexus/bin/aws-lambda-rie-<version>`).

`Sandbox` runs one function as Lambda does: the function's package read-only at
/var/task, the layer read-only at /opt, Lambda's runtime (awslambdaric and boto3, at the
versions pinned in pyproject.toml) read-only at /var/runtime, the whole root file system
read-only and a fresh /tmp the only writable place. It takes a mount namespace
(`unshare --mount`, as root), so nothing outside the sandbox sees its mounts. The
emulator starts the runtime on the first invocation (the cold start) and answers the
invocations API on 127.0.0.1; its REPORT lines are kept in `Sandbox.reports`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nexus.livekit_server import cache_dir, ensure_go_binary

RIE_VERSION = "v0.0.0-20261030222936-bef5c4ba774d"  # the module proxy's latest (no tagged release is served)
GO_PACKAGE = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
HOW_TO_GET = f"install Go >= 1.26 (https://go.dev/dl/) and rerun to build aws-lambda-rie {RIE_VERSION[:20]}… once"
# Lambda's runtime provides these beside the function (boto3 for shared/secrets.py).
RUNTIME_REQUIREMENTS = ("awslambdaric", "boto3")
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


class EmulatorUnavailable(RuntimeError):
    """No emulator binary and no way to build one here, or no way to make the sandbox."""


def binary_path(version: str = RIE_VERSION) -> Path:
    return cache_dir() / "bin" / f"aws-lambda-rie-{version}"


def ensure_binary(version: str = RIE_VERSION, *, build: bool = True,
                  log: Callable[[str], None] | None = None) -> Path:
    """The cached emulator for `version`, built first if it is missing (and `build`)."""
    return ensure_go_binary("aws-lambda-rie", GO_PACKAGE, version, binary_path(version), "aws-lambda-rie",
                            build=build, log=log, how_to_get=HOW_TO_GET, error=EmulatorUnavailable,
                            lock_name=f".build-aws-lambda-rie-{version}.lock")


def sandbox_problem() -> str | None:
    """Why a sandbox cannot be made here, or None."""
    if sys.platform != "linux":
        return "the sandbox needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "the sandbox's mounts need root (CI and the project's machines run as root)"
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return "unshare and setpriv (util-linux) are not installed"
    return None


# -- the sandbox --------------------------------------------------------------------------------

# Runs inside `unshare --mount --propagation private`: mounts made here are this process's only.
_SANDBOX = r"""
set -eu
mount -t tmpfs -o size=16m,mode=755 lambda-var /var
mkdir -p /var/task /var/runtime
mount --bind "$NEXUS_TASK" /var/task && mount -o remount,bind,ro /var/task
mount --bind "$NEXUS_RUNTIME" /var/runtime && mount -o remount,bind,ro /var/runtime
mount -o remount,ro /var
mount --bind "$NEXUS_LAYER" /opt && mount -o remount,bind,ro /opt
mount -t tmpfs -o size=512m,mode=1777 lambda-tmp /tmp
mount -o remount,bind,ro /
cd /var/task
exec "$NEXUS_RIE" --log-level error --runtime-interface-emulator-address "127.0.0.1:$NEXUS_PORT" \
  --runtime-api-address "127.0.0.1:$NEXUS_API_PORT" "$NEXUS_PYTHON" -S -m awslambdaric "$NEXUS_HANDLER"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Invocation:
    status: int           # the emulator's HTTP status: 200, or 502 when init or the invocation failed
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Sandbox:
    """One function's execution environment under the emulator."""

    task: Path                      # the function's package (-> /var/task)
    layer: Path                     # the layer's package (-> /opt)
    runtime: Path                   # awslambdaric + boto3 (-> /var/runtime)
    handler: str
    environment: dict[str, str]
    python: str = sys.executable    # the Runtime's minor; its standard library stands in for /var/lang
    rie: Path | None = None
    timeout: int = 30               # the function's Timeout (AWS_LAMBDA_FUNCTION_TIMEOUT)
    log_path: Path | None = None

    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    port: int = field(default=0, init=False)
    reports: list[str] = field(default_factory=list, init=False)

    def start(self) -> "Sandbox":
        problem = sandbox_problem()
        if problem:
            raise EmulatorUnavailable(problem)
        rie = self.rie or ensure_binary(build=False)
        self.port = _free_port()
        python = str(Path(getattr(sys, "_base_executable", self.python) if self.python == sys.executable
                          else self.python).resolve())
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": "/var/task",
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            # Lambda's python runtime: the function, then the layer, then the runtime's own packages.
            "PYTHONPATH": f"/var/task:/opt/python/lib/python{version}/site-packages:/opt/python:/var/runtime",
            "AWS_REGION": "eu-north-1", "AWS_DEFAULT_REGION": "eu-north-1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout),
            **self.environment,
            "NEXUS_TASK": str(self.task), "NEXUS_LAYER": str(self.layer), "NEXUS_RUNTIME": str(self.runtime),
            "NEXUS_RIE": str(rie), "NEXUS_PYTHON": python, "NEXUS_HANDLER": self.handler,
            "NEXUS_PORT": str(self.port), "NEXUS_API_PORT": str(_free_port()),
        }
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        # setpriv --pdeathsig: the emulator (exec'd in place by unshare and sh) stops when we do.
        self.proc = subprocess.Popen(["setpriv", "--pdeathsig", "TERM", "unshare", "--mount", "--propagation",
                                      "private", "/bin/sh", "-c", _SANDBOX],
                                     env=env, stdout=subprocess.PIPE, stderr=out)
        import threading

        threading.Thread(target=self._read_reports, daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorUnavailable(f"the sandbox exited ({self.proc.returncode}); see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmulatorUnavailable("the emulator did not listen within 30 s")

    def _read_reports(self) -> None:  # also keeps the pipe from filling
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("REPORT "):
                self.reports.append(line)

    def invoke(self, event: dict) -> Invocation:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{INVOKE_PATH}",
                                         data=json.dumps(event).encode(), method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=self.timeout + 30) as reply:
                return Invocation(reply.status, reply.read())
        except urllib.error.HTTPError as e:
            return Invocation(e.code, e.read())

    def first_report(self, wait: float = 30.0) -> str:
        """The emulator's REPORT line of the first invocation (it reads stdout behind the answer)."""
        deadline = time.monotonic() + wait
        while not self.reports and time.monotonic() < deadline and self.proc and self.proc.poll() is None:
            time.sleep(0.02)
        return self.reports[0] if self.reports else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the packages it runs -----------------------------------------------------------------------

def build_runtime(dest: Path) -> Path:
    """Lambda's runtime side for the sandbox: awslambdaric and boto3 as pinned here, with bytecode."""
    from nexus import package

    dest.mkdir(parents=True, exist_ok=True)
    package.pip_install(package.closure(RUNTIME_REQUIREMENTS), dest, host=True)
    package.compile_bytecode(dest, "/var/runtime")
    return dest


def cached_build(kind: str, host: bool, build: Callable[[Path], None]) -> Path:
    """build(dest) once per digest of its inputs (nexus.package.inputs_digest), in
    ~/.cache/nomadnexus/packages; builds of the same kind unused for an hour are removed."""
    from nexus import package

    import fcntl

    root = cache_dir() / "packages"
    dest = root / f"{kind}-{package.inputs_digest(host)}"
    if (dest / ".complete").exists():
        os.utime(dest)  # in use: not pruned by another checkout's build
        return dest
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{kind}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # runs sharing the cache (parallel checkouts) build once
        if (dest / ".complete").exists():
            return dest
        for old in root.glob(f"{kind}-*"):
            if time.time() - old.stat().st_mtime > 3600:  # others' (other checkouts) unused for an hour
                shutil.rmtree(old, ignore_errors=True)
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # a build that died half-way
        build(partial)
        partial.rename(dest)
        (dest / ".complete").touch()
    return dest


def host_packages() -> Path:
    """Every package for this machine and Python, with the runtime side in runtime/ (cached)."""
    from nexus import package

    def build(dest: Path) -> None:
        package.build_all(dest, host=True)
        build_runtime(dest / "runtime")

    return cached_build("host", True, build)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nexus.lambda_emulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("build", "path"))
    args = parser.parse_args(argv)
    try:
        path = ensure_binary(build=args.command == "build")
    except EmulatorUnavailable as e:
        print(f"aws-lambda-rie: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
