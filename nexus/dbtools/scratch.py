"""Throwaway PostgreSQL clusters that the migrations are replayed into.

The default is the embedded server (nexus/pg.py). Other server binaries (a
distribution's PostgreSQL 15, say) run through a subclass whose steps that
touch binaries (initdb, postgres, pg_isready) use that directory instead;
everything else (stop, destroy, URLs) is the embedded server's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nexus.pg import EmbeddedPostgres, _make_traversable, _run_as

# Where Debian/Ubuntu (apt.postgresql.org too) put each major version's server.
DISTRO_BIN = "/usr/lib/postgresql/{major}/bin"


def distro_bin(major: int) -> Path | None:
    path = Path(DISTRO_BIN.format(major=major))
    return path if (path / "postgres").exists() and (path / "initdb").exists() else None


class PostgresAt(EmbeddedPostgres):
    """EmbeddedPostgres driven by the server binaries in `bin_path`."""

    def __init__(self, bin_path: Path, data_dir: Path, **kw):
        super().__init__(data_dir, **kw)
        self.bin_path = Path(bin_path)

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        run_as = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, run_as["user"], run_as["group"])
        subprocess.run(
            [str(self.bin_path / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **run_as,
        )

    def start(self, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            return
        self.init()
        run_as = _run_as()
        self.socket_dir.mkdir(exist_ok=True)
        if run_as:
            os.chown(self.socket_dir, run_as["user"], run_as["group"])
            self.log_path.touch()
            os.chown(self.log_path, run_as["user"], run_as["group"])
        args = [str(self.bin_path / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True, **run_as)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_path.read_text()[-2000:]}")
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not become ready in {timeout}s; see {self.log_path}")

    def _ready(self) -> bool:
        r = subprocess.run(
            [str(self.bin_path / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return r.returncode == 0


@contextmanager
def scratch_server(bin_path: Path | None = None) -> Iterator[EmbeddedPostgres]:
    """A fresh cluster in a temp dir, destroyed on exit."""
    root = Path(tempfile.mkdtemp(prefix="nexus-scratch-pg-"))
    root.chmod(0o755)  # the unprivileged server user must reach its data dir
    server = PostgresAt(bin_path, root / "data", fast=True) if bin_path else EmbeddedPostgres(root / "data", fast=True)
    try:
        server.start()
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def replay(url: str, directory: Path | None = None) -> list[str]:
    """The platform shim, then every migration, into the (empty) database at `url`."""
    from nexus import migrate

    migrate.apply_shim(url)
    kw = {"directory": directory} if directory else {}
    return migrate.migrate(url, log=lambda *_: None, **kw)


def server_version(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0])
