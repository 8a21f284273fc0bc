"""Demo data for `make dev`: one member per rank, nets with different
thresholds, responders for flares, and a skill with a certified guide.

Idempotent: re-running leaves one copy of everything. Parts whose tables a
given checkout does not have yet are skipped.
"""

from __future__ import annotations

from nexus.devenv import DEMO_PASSWORD, DEMO_RANKS, demo_email, demo_user_id

# (key, rank, roles, callsign)
DEMO_MEMBERS = [
    *[(rank, rank, [], f"{rank.capitalize()}1") for rank in DEMO_RANKS],
    ("medic", "voyager", ["Medic"], "Medic1"),
    ("rescuer", "scout", ["Rescue"], "Rescue1"),
    ("guide", "voyager", [], "Guide1"),
    ("brigged", "scout", ["brigged"], "Brig1"),
]

# (code, label, join, rx, tx)
DEMO_NETS = [
    ("test-room", "Runbook test room", "vagrant", "vagrant", "scout"),
    ("lobby", "Lobby", "vagrant", "vagrant", "vagrant"),
    ("ops", "Operations", "scout", "scout", "voyager"),
    ("command", "Command", "founder", "founder", "founder"),
    ("pioneer-deck", "Pioneer deck", "pioneer", "pioneer", "pioneer"),
]

DEMO_SKILL_ID = demo_user_id("skill-navigation")


def _exists(conn, relation: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()[0]


def _create_through_auth_server(auth: tuple[str, str], uid: str, email: str, callsign: str) -> None:
    """A confirmed member with the dev password, made by the auth server's admin API (so it can
    sign in and its admin API lists it); one that exists is left as it is."""
    from nexus.auth_server import call

    base_url, service_key = auth
    status, _ = call(base_url, "GET", f"/admin/users/{uid}", apikey=service_key)
    if status == 200:
        return
    status, body = call(base_url, "POST", "/admin/users", {
        "id": uid, "email": email, "password": DEMO_PASSWORD, "email_confirm": True,
        "user_metadata": {"callsign": callsign}}, apikey=service_key)
    if status != 200:
        raise RuntimeError(f"the auth server would not create demo member {email}: {status} {body}")


def seed(url: str, log=print, *, auth: tuple[str, str] | None = None) -> None:
    """auth: (auth server URL, service_role key) when Supabase's auth server runs; demo members
    are then made through its admin API. Without it they are written to the shim's auth.users
    the way the server writes its rows."""
    import psycopg

    if auth is not None:
        for key, _rank, _roles, callsign in DEMO_MEMBERS:
            _create_through_auth_server(auth, demo_user_id(key), demo_email(key), callsign)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for key, rank, roles, callsign in DEMO_MEMBERS:
            uid = demo_user_id(key)
            if auth is None:
                conn.execute(
                    "INSERT INTO auth.users (instance_id, id, aud, role, email, raw_app_meta_data, raw_user_meta_data, "
                    "email_confirmed_at, created_at, updated_at, confirmation_token, recovery_token, "
                    "email_change_token_new, email_change) VALUES ('00000000-0000-0000-0000-000000000000', %s, "
                    "'authenticated', 'authenticated', %s, '{\"provider\": \"email\", \"providers\": [\"email\"]}', "
                    "jsonb_build_object('callsign', %s::text), now(), now(), now(), '', '', '', '') "
                    "ON CONFLICT (id) DO NOTHING",
                    (uid, demo_email(key), callsign),
                )
            conn.execute("UPDATE public.profiles SET rank = %s, roles = %s, callsign = %s WHERE id = %s",
                         (rank, roles, callsign, uid))
        for code, label, join, rx, tx in DEMO_NETS:
            conn.execute(
                "INSERT INTO public.voice_nets (code, label, min_rank_to_join, min_rank_to_rx, min_rank_to_tx) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (code) DO UPDATE SET label = EXCLUDED.label, "
                "min_rank_to_join = EXCLUDED.min_rank_to_join, min_rank_to_rx = EXCLUDED.min_rank_to_rx, "
                "min_rank_to_tx = EXCLUDED.min_rank_to_tx",
                (code, label, join, rx, tx),
            )
        if _exists(conn, "public.skills") and _exists(conn, "public.certifications"):
            cols = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema='public' AND table_name='skills'")}
            name_col = "name" if "name" in cols else ("title" if "title" in cols else None)
            if name_col:
                conn.execute(
                    f"INSERT INTO public.skills (id, {name_col}) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                    (DEMO_SKILL_ID, "Navigation 101"),
                )
                conn.execute(
                    "INSERT INTO public.certifications (user_id, skill_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (demo_user_id("guide"), DEMO_SKILL_ID),
                )
    log(f"seeded {len(DEMO_MEMBERS)} members and {len(DEMO_NETS)} nets")
