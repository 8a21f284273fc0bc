"""Throwaway PostgreSQL clusters that the migrations are replayed into.

The default is the embedded server (nexus/pg.py); other server binaries (a
distribution's PostgreSQL 15, say) are passed to it as `bin_path`.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nexus.pg import EmbeddedPostgres

# Where Debian/Ubuntu (apt.postgresql.org too) put each major version's server.
DISTRO_BIN = "/usr/lib/postgresql/{major}/bin"


def distro_bin(major: int) -> Path | None:
    path = Path(DISTRO_BIN.format(major=major))
    return path if (path / "postgres").exists() and (path / "initdb").exists() else None


@contextmanager
def scratch_server(bin_path: Path | None = None) -> Iterator[EmbeddedPostgres]:
    """A fresh cluster in a temp dir, destroyed on exit."""
    root = Path(tempfile.mkdtemp(prefix="nexus-scratch-pg-"))
    root.chmod(0o755)  # the unprivileged server user must reach its data dir
    server = EmbeddedPostgres(root / "data", fast=True, bin_path=bin_path)
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
