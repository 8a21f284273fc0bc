"""Compare two catalog snapshots and describe each difference in one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexus.dbtools.catalog import OUR_SCHEMAS, Snapshot


@dataclass(frozen=True)
class Difference:
    change: str  # missing | extra | changed
    kind: str
    name: str
    detail: str = ""

    def __str__(self) -> str:
        if self.change == "missing":
            return f"missing  {self.kind} {self.name}: in the migrations, not in the live database"
        if self.change == "extra":
            return f"extra    {self.kind} {self.name}: in the live database, not in the migrations"
        return f"changed  {self.kind} {self.name}: {self.detail}"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _ignored_extra(kind: str, attrs: dict[str, Any]) -> bool:
    # A Supabase project ships many extensions in its own schemas; only one
    # installed into our schemas is part of (or drift from) our contract.
    return kind == "extension" and attrs.get("schema") not in OUR_SCHEMAS


def compare(expected: Snapshot, live: Snapshot) -> list[Difference]:
    """Differences that make `live` deviate from `expected` (the replayed migrations)."""
    out: list[Difference] = []
    for kind in expected.keys() | live.keys():
        want, have = expected.get(kind, {}), live.get(kind, {})
        for name in sorted(want.keys() - have.keys()):
            out.append(Difference("missing", kind, name))
        for name in sorted(have.keys() - want.keys()):
            if not _ignored_extra(kind, have[name]):
                out.append(Difference("extra", kind, name))
        for name in sorted(want.keys() & have.keys()):
            a, b = want[name], have[name]
            for attr in sorted(a.keys() | b.keys()):
                if a.get(attr) != b.get(attr):
                    detail = f"{attr} differs (migrations: {_show(a.get(attr))}; live: {_show(b.get(attr))})"
                    out.append(Difference("changed", kind, name, detail))
    order = {"missing": 0, "extra": 1, "changed": 2}
    return sorted(out, key=lambda d: (d.kind, d.name, order[d.change], d.detail))
