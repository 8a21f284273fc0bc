"""`nexus db migrate | verify | smoke | lint | adopt`: the schema contract, checked.

  migrate  apply pending migrations to DATABASE_URL (refuses edited applied files)
  adopt    take over the predecessor's database: --plan, then with a snapshot (docs/cutover.md)
  verify   replay the migrations into a scratch PostgreSQL and diff it with DATABASE_URL
  smoke    probe DATABASE_URL inside a rolled-back transaction
  lint     Supabase's advisor checks (splinter) on our schemas
  fingerprint  the per-class contract fingerprint health compares (of a replay, or --url)

Each exits 0 when all is well, 1 on a finding or drift, 2 on a usage or
connection problem. `--url` overrides DATABASE_URL; lint and smoke take
`--replay` to run on a fresh replay of the migrations instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nexus.migrate import MIGRATIONS_DIR, MigrationError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _url(args: argparse.Namespace) -> str:
    url = args.url or os.environ.get("DATABASE_URL")
    if not url:
        raise UsageError("set DATABASE_URL (or pass --url) to the database to check")
    return url


@contextmanager
def _target(args: argparse.Namespace) -> Iterator[str]:
    """The database a read-only command looks at: --replay, --url or DATABASE_URL."""
    if getattr(args, "replay", False):
        from nexus.dbtools import scratch

        with scratch.scratch_server() as server:
            scratch.replay(server.url, args.dir)
            print(f"(checking a fresh replay of {args.dir})")
            yield server.url
    else:
        yield _url(args)


def cmd_migrate(args: argparse.Namespace) -> int:
    import psycopg

    from nexus import migrate

    url = _url(args)
    allow = args.allow_transaction_pooler
    try:
        migrate.check_session_url(url, allow_transaction_pooler=allow)
    except MigrationError as e:
        raise UsageError(str(e)) from None
    if args.with_shim:
        migrate.apply_shim(url, allow_transaction_pooler=allow)
    else:
        with psycopg.connect(url, connect_timeout=10) as conn:
            bare = conn.execute("SELECT to_regrole('service_role') IS NULL OR to_regprocedure('auth.uid()') IS NULL")
            if bare.fetchone()[0]:
                raise UsageError("this database lacks what Supabase provides (API roles, auth.uid()); "
                                 "for a local database pass --with-shim to create them first")
    applied = migrate.migrate(url, args.dir, allow_transaction_pooler=allow)
    print(f"{len(applied)} migration(s) applied; the database is up to date")
    return EXIT_OK


def _print_foreign(names: list[str], warnings: list) -> None:
    if not names and not warnings:
        return
    print(f"foreign: {len(names)} object(s) not ours, left in place (not part of the contract):")
    for n in names:
        print(f"  {n}")
    for w in warnings:
        print(f"  {w}")


def cmd_verify(args: argparse.Namespace) -> int:
    from nexus.dbtools.verify import report

    url = _url(args)
    result = report(url, reference_url=args.reference, directory=args.dir,
                    bin_path=Path(args.postgres_bin) if args.postgres_bin else None)
    main_kinds = ("table", "function", "type", "column")
    named = [f"{d.kind} {d.name}" for d in result.foreign if d.kind in main_kinds]
    rest = len(result.foreign) - len(named)
    _print_foreign(named + ([f"(and {rest} index(es), constraint(s), policy(ies), trigger(s) and grant(s) "
                             "on those tables)"] if rest else []), result.warnings)
    differences = result.differences
    if not differences:
        print("verify: the database matches the migrations")
        return EXIT_OK
    print(f"verify: {len(differences)} difference(s) between the migrations and the database:")
    for d in differences:
        print(f"  {d}")
    return EXIT_FINDINGS


def cmd_smoke(args: argparse.Namespace) -> int:
    import psycopg

    from nexus.dbtools import foreign, smoke

    with _target(args) as url, psycopg.connect(url, prepare_threshold=None, connect_timeout=10) as conn:
        registry = foreign.load(conn)
        probes, theirs = [], []
        for p in smoke.run(conn, call_volatile=args.call_volatile):
            kind = "function" if p.object.endswith(")") else "table"
            (theirs if registry.owns(kind, p.object) else probes).append(p)
    if theirs:
        print(f"foreign: {len(theirs)} probe(s) of objects not ours (not part of the contract):")
        for p in theirs:
            print(f"  {'WARN' if not p.ok else 'ok  '}  {p.object}: {p.detail}")
    for p in probes:
        print(f"  {p}")
    failed = [p for p in probes if not p.ok]
    print(f"smoke: {len(probes) - len(failed)} passed, {len(failed)} failed (nothing was changed)")
    return EXIT_FINDINGS if failed else EXIT_OK


def cmd_lint(args: argparse.Namespace) -> int:
    import psycopg

    from nexus.dbtools import foreign, lint

    with _target(args) as url, psycopg.connect(url, autocommit=True, prepare_threshold=None,
                                               connect_timeout=10) as conn:
        registry = foreign.load(conn)
        findings, theirs = [], []
        for f in lint.run(conn, tuple(args.schema)):
            (theirs if registry.owns("function" if f.object.endswith(")") else "table", f.object) else findings).append(f)
        warnings = foreign.warnings(conn, registry)
    _print_foreign([f"{f}" for f in theirs], warnings)
    for f in findings:
        print(f"  {f}")
    print(f"lint: {len(findings)} finding(s) in {', '.join(args.schema)}")
    return EXIT_FINDINGS if findings else EXIT_OK


def cmd_adopt(args: argparse.Namespace) -> int:
    import psycopg

    from nexus import migrate
    from nexus.dbtools import adopt

    url = _url(args)
    try:
        migrate.check_session_url(url)
    except MigrationError as e:
        raise UsageError(str(e)) from None
    if args.plan:
        try:
            adopt.plan(url, args.dir)
        except adopt.PlanError as e:
            print(f"plan: {e}; nothing was changed", file=sys.stderr)
            return EXIT_FINDINGS
        return EXIT_OK
    if args.repair_history_only:
        raise UsageError("--repair-history-only is no longer supported: `supabase db push` applies each migration "
                         "in its own transaction and cannot adopt the predecessor's database safely (its set-aside "
                         "migration refuses to run that way). Run `nexus db adopt` (docs/cutover.md).")
    if not args.snapshot_taken and not args.snapshot:
        raise UsageError("refusing to adopt without a snapshot: pass --snapshot FILE (a pg_dump is taken to it) "
                         "or --snapshot-taken once you have one (docs/cutover.md)")
    with psycopg.connect(url, connect_timeout=10) as conn:
        bare = conn.execute("SELECT to_regrole('service_role') IS NULL OR to_regprocedure('auth.uid()') IS NULL")
        if bare.fetchone()[0]:
            raise UsageError("this database lacks what Supabase provides (API roles, auth.uid())")
    if args.snapshot:
        try:
            path = adopt.snapshot(url, Path(args.snapshot))
        except FileExistsError as e:
            raise UsageError(str(e)) from None
        except subprocess.CalledProcessError as e:
            print(f"nexus db adopt: the snapshot failed, nothing was changed: {e.stderr.strip()[-500:]}",
                  file=sys.stderr)
            return EXIT_FINDINGS
        print(f"snapshot: {path} (restore with pg_restore --clean --if-exists -d <url> {path.name})")
    return adopt.adopt(url, args.dir)


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from nexus.dbtools import fingerprint

    if args.url:
        doc = fingerprint.compute(args.url, args.dir)
    else:
        doc = fingerprint.from_replay(args.dir)
    if args.write:
        print(f"wrote {fingerprint.write(doc, Path(args.write))}")
    else:
        print(json.dumps(doc, indent=1, sort_keys=True))
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    from nexus.dbtools.catalog import OUR_SCHEMAS

    p = argparse.ArgumentParser(prog="nexus db", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--url", help="database URL (default: $DATABASE_URL)")
        sp.add_argument("--dir", type=Path, default=MIGRATIONS_DIR, help="migrations folder")
        return sp

    m = common(sub.add_parser("migrate", help="apply pending migrations"))
    m.add_argument("--with-shim", action="store_true",
                   help="create the Supabase platform objects first (local databases only)")
    m.add_argument("--allow-transaction-pooler", action="store_true",
                   help="run even on port 6543 (refused by default: Supabase's transaction pooler "
                        "cannot hold the runner's lock)")
    m.set_defaults(func=cmd_migrate)

    v = common(sub.add_parser("verify", help="diff the database against the replayed migrations"))
    v.add_argument("--reference", help="compare with this database instead of a fresh replay")
    v.add_argument("--postgres-bin", help="server binaries to replay with (default: the embedded server)")
    v.set_defaults(func=cmd_verify)

    s = common(sub.add_parser("smoke", help="probe tables and functions in a rolled-back transaction"))
    s.add_argument("--replay", action="store_true", help="probe a fresh replay instead of the database")
    s.add_argument("--call-volatile", action="store_true",
                   help="also call volatile functions (their effects are rolled back)")
    s.set_defaults(func=cmd_smoke)

    a = common(sub.add_parser("adopt", help="take over the predecessor's database (docs/cutover.md)"))
    a.add_argument("--plan", action="store_true", help="print what adopting would do; change nothing")
    a.add_argument("--snapshot", metavar="FILE", help="take a pg_dump snapshot to FILE first")
    a.add_argument("--snapshot-taken", action="store_true", help="a snapshot exists; adopt without taking one")
    a.add_argument("--repair-history-only", action="store_true",
                   help="refused: `supabase db push` cannot adopt the predecessor's database (one transaction "
                        "per file); run `nexus db adopt`")
    a.set_defaults(func=cmd_adopt)

    lt = common(sub.add_parser("lint", help="Supabase advisor checks on our schemas"))
    lt.add_argument("--replay", action="store_true", help="lint a fresh replay instead of the database")
    lt.add_argument("--schema", action="append", default=None, help=f"schema to lint (default: {', '.join(OUR_SCHEMAS)})")
    lt.set_defaults(func=cmd_lint)

    f = sub.add_parser("fingerprint", help="health's contract fingerprint of a fresh replay (or of --url)")
    f.add_argument("--url", help="fingerprint this database instead of a fresh replay")
    f.add_argument("--dir", type=Path, default=MIGRATIONS_DIR, help="migrations folder")
    f.add_argument("--write", help="write the JSON here (health reads CONTRACT_FINGERPRINT_FILE)")
    f.set_defaults(func=cmd_fingerprint)
    return p


def main(argv: list[str]) -> int:
    import psycopg

    from nexus.dbtools.catalog import OUR_SCHEMAS

    args = parser().parse_args(argv)
    if getattr(args, "schema", "absent") is None:
        args.schema = list(OUR_SCHEMAS)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"nexus db {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except MigrationError as e:
        print(f"nexus db {args.command}: {e}", file=sys.stderr)
        return EXIT_FINDINGS
    except psycopg.OperationalError as e:
        # The message names host and reason; libpq never includes the password.
        print(f"nexus db {args.command}: cannot reach the database: {str(e).strip().splitlines()[0]}",
              file=sys.stderr)
        return EXIT_USAGE
