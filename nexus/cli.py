"""`nexus`: the developer's command line.

  nexus dev                 run the local stack (what `make dev` does)
  nexus token --rank scout  print an access token for that demo member
  nexus db <command>        migrate | verify | smoke | lint (see docs/schema-contract.md)
  nexus smoke --base-url U  the runbook's phase 6 checks against a running stack
  nexus admin <command>     member | net | skill | certify, audited (see nexus/admin.py)
  nexus webhook test --url U  runbook 4.2: a LiveKit-signed join and leave, and the answers
"""

from __future__ import annotations

import argparse
import os
import sys
import threading


def cmd_token(args: argparse.Namespace) -> int:
    from nexus import devenv

    env = devenv.read_dev_env()
    key = args.user or args.rank
    known = {m[0] for m in __import__("nexus.seed", fromlist=["DEMO_MEMBERS"]).DEMO_MEMBERS}
    if key not in known:
        print(f"unknown demo member {key!r}; choose one of {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    if env.get("NEXUS_AUTH_SERVER") == "on" and args.ttl is None:
        # A real session's access token, from the local auth server.
        print(devenv.sign_in(env, key))
        return 0
    # A lifetime the server cannot give (or no server): signed here with its key (or the HS256 secret).
    print(devenv.member_token(env, devenv.demo_user_id(key), ttl=args.ttl or 3600))
    return 0


def _start_timers(stop: threading.Event) -> None:
    import logging

    from nexus import registry

    log = logging.getLogger("nexus.dev")
    for name, (path, interval) in registry.SCHEDULED_FUNCTIONS.items():
        try:
            handler = registry.load(path)
        except (ImportError, AttributeError) as e:
            log.warning("scheduled function %s not available: %s", name, e)
            continue

        def loop(handler=handler, name=name, interval=interval) -> None:
            while not stop.wait(interval):
                try:
                    handler({"source": "nexus.dev", "detail-type": "Scheduled Event", "detail": {}}, None)
                except Exception:
                    log.exception("scheduled function %s failed", name)

        threading.Thread(target=loop, name=f"timer-{name}", daemon=True).start()


def cmd_dev(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from nexus import devenv, migrate, seed
    from nexus.pg import EmbeddedPostgres

    import signal

    # SIGTERM (e.g. from `timeout` or a process manager) unwinds like Ctrl-C,
    # so the embedded PostgreSQL is stopped by the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    livekit_port = args.livekit_port
    if livekit_port == 0:
        from nexus.livekit_server import free_port

        livekit_port = free_port()
    auth_binary = _auth_binary(args)
    env = devenv.dev_environment(pg_port=args.pg_port, gateway_port=args.port, livekit_port=livekit_port,
                                 auth_server=auth_binary is not None)
    server = EmbeddedPostgres(devenv.DATA_DIR / "pg", port=args.pg_port)
    print(f"starting PostgreSQL on 127.0.0.1:{args.pg_port} (data in {server.data_dir})", flush=True)
    server.start()
    stale = migrate.built_by_another_chain(server.url)
    if not stale and auth_binary is not None and _auth_made_by_shim(server.url):
        stale = "its auth schema was made by the shim, not by the auth server"
    if stale:
        # Never patched: the chain was rewritten since this database was built.
        print(f"the local database in {server.data_dir} was built by an older migration chain ({stale}); "
              "recreating it from the current migrations (its data is demo data and is seeded again)", flush=True)
        server.destroy()
        server.start()
    stop = threading.Event()
    livekit = auth = None
    try:
        livekit = _start_livekit(args, env, livekit_port)
        # Supabase's order: the auth server's migrations, the shim, our chain.
        migrate.prepare_local(server.url, auth_binary=auth_binary)
        # health's drift check compares with this: the freshly migrated database's fingerprint
        # (taken before the seed, which adds rows only).
        from nexus.dbtools import fingerprint

        env["CONTRACT_FINGERPRINT_FILE"] = str(fingerprint.write(
            fingerprint.compute(server.url), devenv.DATA_DIR / fingerprint.FILE_NAME))
        if auth_binary is not None:
            auth = _start_auth(auth_binary, server.url, env)
            if auth is None:  # it would not start: the shim's tokens, as without a binary
                env.update(devenv.dev_environment(pg_port=args.pg_port, gateway_port=args.port,
                                                  livekit_port=livekit_port, auth_server=False))
        seed.seed(server.url, auth=(auth.url, env["SUPABASE_SERVICE_ROLE_KEY"]) if auth else None)
        path = devenv.write_dev_env(env)
        os.environ.update(env)
        from nexus.gateway import Gateway

        gateway = Gateway(auth_upstream=auth.url if auth else None)
        for name, why in gateway.missing.items():
            print(f"  (not served yet: {name}: {why})")
        _start_timers(stop)
        print(
            f"\nNomadNexus functions at {env['FUNCTIONS_URL']}/<name>: {', '.join(sorted(gateway.apps))}\n"
            f"Settings for clients: {path}"
            + (f" (supabase-js: createClient(SUPABASE_URL, SUPABASE_ANON_KEY); auth at {env['SUPABASE_URL']}/auth/v1, "
               "no /rest/v1)" if auth else "") + "\n"
            f"Get a token:  TOKEN=$(.venv/bin/nexus token --rank scout)\n"
            f"Try it:       curl -X POST {env['FUNCTIONS_URL']}/livekit-token -H \"Authorization: Bearer $TOKEN\" "
            f"-H 'Content-Type: application/json' -d '{{\"roomName\":\"test-room\",\"participantName\":\"Scout1\"}}'\n",
            flush=True,
        )
        uvicorn.run(gateway, host="127.0.0.1", port=args.port, log_level="info", lifespan="off")
    finally:
        stop.set()
        if auth is not None:
            auth.stop()
        if livekit is not None:
            livekit.stop()
        server.stop()
    return 0


def _auth_binary(args: argparse.Namespace):
    """Supabase's auth server binary, or None after one line saying what is missing."""
    from nexus import auth_server

    if not args.auth:
        print("Auth: not started (--no-auth); tokens from `nexus token` only", flush=True)
        return None
    found = auth_server.find_binary()
    if found is None:
        print(f"Auth: not started, running on the shim (tokens from `nexus token` only): {auth_server.how_to_get()}",
              flush=True)
    return found


def _auth_made_by_shim(url: str) -> bool:
    from nexus import auth_server

    return auth_server.made_by_auth_server(url) is False


def _start_auth(binary, database_url: str, env: dict[str, str]):
    """The auth server on a free loopback port, behind the gateway at $SUPABASE_URL/auth/v1."""
    from nexus import auth_server, devenv

    server = auth_server.AuthServer(database_url, env["SUPABASE_JWT_SECRET"], devenv.auth_signing_key(),
                                    external_url=f"{env['SUPABASE_URL']}/auth/v1", binary=binary,
                                    log_path=devenv.DATA_DIR / "auth.log")
    try:
        server.start()
    except auth_server.ServerUnavailable as e:
        print(f"Auth: not started: {e}", flush=True)
        return None
    print(f"Auth: Supabase auth server {auth_server.AUTH_SERVER_VERSION} at {env['SUPABASE_URL']}/auth/v1 "
          f"(log {server.log_path}; demo members sign in with password {devenv.DEMO_PASSWORD!r})", flush=True)
    return server


def _start_livekit(args: argparse.Namespace, env: dict[str, str], port: int):
    """livekit-server on 127.0.0.1:`port` with the dev key pair, its webhooks to the local
    livekit-webhook; None (after one line saying why) when it is not started here."""
    from nexus import devenv, livekit_server

    if devenv.external_livekit():
        print(f"LiveKit: using {env['LIVEKIT_URL']} from LIVEKIT_URL (no local server started)", flush=True)
        return None
    if not args.livekit:
        print("LiveKit: not started (--no-livekit)", flush=True)
        return None
    try:
        binary = livekit_server.ensure_binary()
    except livekit_server.ServerUnavailable as e:
        print(f"LiveKit: not started: {e}", flush=True)
        return None
    rtc_ports = {} if port != devenv.LIVEKIT_PORT else {"rtc_tcp_port": port + 1, "rtc_udp_port": port + 2}
    server = livekit_server.LiveKitServer(
        env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"], port=port, binary=binary,
        webhook_urls=[f"{env['FUNCTIONS_URL']}/livekit-webhook"], log_path=devenv.DATA_DIR / "livekit.log",
        **rtc_ports)
    try:
        server.start()
    except livekit_server.ServerUnavailable as e:
        print(f"LiveKit: not started: {e}", flush=True)
        return None
    print(f"LiveKit: livekit-server {livekit_server.LIVEKIT_SERVER_VERSION} at {server.url} "
          f"(log {server.log_path}; webhooks to livekit-webhook)", flush=True)
    return server


def cmd_db(argv: list[str]) -> int:
    try:
        from nexus.dbtools import main as db_main
    except ImportError:
        if argv[:1] == ["migrate"]:
            from nexus import migrate

            url = os.environ.get("DATABASE_URL")
            if not url:
                print("DATABASE_URL is not set", file=sys.stderr)
                return 2
            migrate.migrate(url)
            return 0
        print("nexus db: only `migrate` is available in this checkout", file=sys.stderr)
        return 2
    return db_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["db"]:
        return cmd_db(argv[1:])
    if argv[:1] == ["admin"]:
        from nexus import admin

        return admin.main(argv[1:])
    if argv[:1] == ["smoke"]:
        from nexus import smoke

        return smoke.main(argv[1:])
    if argv[:1] == ["webhook"]:
        from nexus import webhook_test

        return webhook_test.main(argv[1:])
    parser = argparse.ArgumentParser(prog="nexus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_dev = sub.add_parser("dev", help="run the local stack")
    p_dev.add_argument("--port", type=int, default=int(os.environ.get("NEXUS_GATEWAY_PORT", 8787)))
    p_dev.add_argument("--pg-port", type=int, default=int(os.environ.get("NEXUS_PG_PORT", 54329)))
    p_dev.add_argument("--livekit-port", type=int, default=int(os.environ.get("NEXUS_LIVEKIT_PORT", 7880)),
                       help="livekit-server's port (0: free ports for it and its ICE ports)")
    p_dev.add_argument("--livekit", action=argparse.BooleanOptionalAction, default=True,
                       help="start the local livekit-server (built once with Go; see README)")
    p_dev.add_argument("--auth", action=argparse.BooleanOptionalAction, default=True,
                       help="run Supabase's auth server when its binary is here (NEXUS_AUTH_BIN; see README)")
    p_dev.set_defaults(func=cmd_dev)
    p_tok = sub.add_parser("token", help="print a demo member's access token")
    who = p_tok.add_mutually_exclusive_group(required=True)
    who.add_argument("--rank", choices=["vagrant", "scout", "voyager", "founder", "pioneer"])
    who.add_argument("--user", help="another demo member: medic, rescuer, guide, brigged")
    p_tok.add_argument("--ttl", type=int, default=None,
                       help="seconds; signed locally (with the auth server's key when it runs) instead of a sign-in")
    p_tok.set_defaults(func=cmd_token)
    sub.add_parser("db", help="migrate | verify | smoke | lint")
    sub.add_parser("admin", help="operator changes: member | net | skill | certify (audited)")
    sub.add_parser("smoke", help="the runbook's phase 6 checks against a running stack (see nexus/smoke.py)")
    sub.add_parser("webhook", help="webhook test --url U: a signed join and leave (see nexus/webhook_test.py)")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
