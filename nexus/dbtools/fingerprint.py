"""The contract fingerprint that health compares with the live database.

`nexus_private.contract_fingerprint()` (supabase/migrations/
20251217000200_health_drift_functions.sql) hashes our objects per class;
the same function, run on a fresh replay of the migrations, gives what the
shipped code expects. This module computes that document:

    {"versions": [...the migrations it was computed from...],
     "objects":  {"tables": [...], "functions": [...]},   # what is ours
     "classes":  {"tables": md5, "rls": md5, "policies": md5, "functions": md5, "grants": md5}}

`make package` writes it into health's bundle (nexus/package.py), `nexus dev`
into .data/, tests wherever they like; health reads it from
CONTRACT_FINGERPRINT_FILE or supabase/contract-fingerprint.json next to the
shipped migrations.

    nexus db fingerprint [--replay | --url U] [--write PATH]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nexus.migrate import MIGRATIONS_DIR, discover

FILE_NAME = "contract-fingerprint.json"


def compute(url: str, directory: Path = MIGRATIONS_DIR) -> dict[str, Any]:
    """The fingerprint of the database at `url`, taken to be a replay of `directory`'s migrations."""
    import psycopg

    with psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=10) as conn:
        doc = conn.execute("SELECT nexus_private.contract_fingerprint()").fetchone()[0]
    return {"versions": [m.version for m in discover(directory)],
            "objects": {k: sorted(v) for k, v in doc["objects"].items()},
            "classes": dict(sorted(doc["classes"].items()))}


def from_replay(directory: Path = MIGRATIONS_DIR, bin_path: Path | None = None) -> dict[str, Any]:
    """Replay the migrations into a scratch server and fingerprint that."""
    from nexus.dbtools import scratch

    with scratch.scratch_server(bin_path) as server:
        scratch.replay(server.url, directory)
        return compute(server.url, directory)


def write(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path
