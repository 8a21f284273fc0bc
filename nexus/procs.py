"""Running a local server process (livekit-server, the auth server): wait until it answers,
read its log's tail, stop it."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable


class NotReady(RuntimeError):
    """The process exited, or did not answer in time (the message says which, with its log)."""


def die_with_parent() -> None:
    """In the child: receive SIGTERM when the process that started it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(argv: list[str], *, name: str, log_path: Path, ready: Callable[[], bool], timeout: float,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server writing to `log_path`, dying with us; return once `ready` (else NotReady)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)
    wait_ready(proc, ready, timeout, name, log_path)
    return proc


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, name: str,
               log_path: Path | None) -> None:
    """Poll `ready` until true; on exit or timeout (the process then stopped) raise NotReady."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            stop(proc)
            raise NotReady(f"{name} exited ({proc.returncode}):\n{log_tail(log_path)}")
        if ready():
            return
        if time.monotonic() > deadline:
            stop(proc)
            raise NotReady(f"{name} did not answer in {timeout:.0f} s:\n{log_tail(log_path)}")
        time.sleep(0.1)


def log_tail(path: Path | None, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except (OSError, TypeError):
        return ""


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it outlives `timeout`."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
