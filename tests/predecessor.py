"""A database in the predecessor's shape, with data covering each of its value
conventions (../shared/predecessor-schema.md), for the adoption tests.

`build(url)` runs the platform shim, tests/fixtures/predecessor_schema.sql,
then inserts the rows below; it returns the ids the tests check row by row.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SCHEMA = Path(__file__).resolve().parent / "fixtures" / "predecessor_schema.sql"

# A P-256 point and auth secret, as btoa() wrote them: '+', '/' and padding.
STD_P256DH = base64.b64encode(bytes.fromhex(
    "04d71176b7802d11574e438e5072b512d2b6c2d6b3e51cb861f60203fd104e942d51b565525b345495e0ec0f2ef93b355db8e16b30248fb23df5ef1071"
    "83fb0e43")).decode()
STD_AUTH = base64.b64encode(bytes.fromhex("b411c8b49239b2f6e97b3eca238082fe")).decode()


def b64url(std: str) -> str:
    return std.replace("+", "-").replace("/", "_").rstrip("=")


@dataclass
class Predecessor:
    url: str
    ids: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> str:
        return self.ids[key]


def _user(conn, ids: dict, key: str, *, profile: dict | None, anonymous: bool = False,
          created: str = "2024-12-01") -> str:
    uid = str(uuid.uuid4())
    ids[key] = uid
    # The predecessor's trigger makes a 'scout' profile; each row is then set as production has it.
    # As the auth server writes its rows (instance, audience, role, empty token strings): its
    # admin API finds and reads them.
    conn.execute("INSERT INTO auth.users (instance_id, id, aud, role, email, is_anonymous, created_at, updated_at, "
                 "raw_app_meta_data, raw_user_meta_data, confirmation_token, recovery_token, email_change_token_new, "
                 "email_change) VALUES ('00000000-0000-0000-0000-000000000000', %s, "
                 "'authenticated', 'authenticated', %s, %s, %s, %s, '{}', '{}', '', '', '', '')",
                 (uid, None if anonymous else f"{key}@example.test", anonymous, created, created))
    if profile is None:
        conn.execute("DELETE FROM public.profiles WHERE id = %s", (uid,))
    else:
        cols = {"created_at": created, **profile}
        sets = ", ".join(f"{k} = %s" for k in cols)
        conn.execute(f"UPDATE public.profiles SET {sets} WHERE id = %s", (*cols.values(), uid))
    return uid


def build(url: str, *, medic_endpoint: str = "https://fcm.googleapis.com/fcm/send/adopted-medic",
          medic_p256dh: str = STD_P256DH, medic_auth: str = STD_AUTH) -> Predecessor:
    from nexus.migrate import prepare_platform

    prepare_platform(url)  # the auth server's `auth` when its binary is here, as production has
    ids: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())
        with conn.transaction():
            # members: ranks (NULL, lower case), roles (NULL, {}, brig in both spellings, any case)
            _user(conn, ids, "old_member", profile={"rank": None, "roles": None, "callsign": "Old Timer",
                                                    "full_name": "Old Timer", "email": "old@example.test"},
                  created="2024-06-01")
            _user(conn, ids, "scout", profile={"rank": "scout", "roles": None, "callsign": "Pathfinder",
                                               "email": "scout@example.test", "discord_id": "1234"})
            _user(conn, ids, "medic", profile={"rank": "voyager", "roles": ["medic", "Ranger"], "callsign": "Doc"})
            # A project where the lower-case CHECK of 20250106000001 did not hold (the
            # frontend's display spelling written back): any case must still read as the rank.
            conn.execute("ALTER TABLE public.profiles DROP CONSTRAINT profiles_rank_check")
            _user(conn, ids, "rescuer", profile={"rank": "Scout ", "roles": ["RESCUE", "ranger", "Rescue"],
                                                 "callsign": "Hook"}, created="2024-12-02")
            _user(conn, ids, "brig", profile={"rank": "scout", "roles": ["brig"], "callsign": "Jailbird"})
            _user(conn, ids, "brigged", profile={"rank": "voyager", "roles": ["Brigged", "Command"],
                                                 "callsign": "Con"})
            _user(conn, ids, "emptied", profile={"rank": "vagrant", "roles": [], "callsign": "  \t "})
            _user(conn, ids, "founder", profile={"rank": "founder", "roles": ["Command"],
                                                 "callsign": "Boss\u0007Man"})
            _user(conn, ids, "pioneer", profile={"rank": "pioneer", "roles": None, "callsign": "X" * 80})
            _user(conn, ids, "guest", profile={"rank": "scout", "is_guest": True,
                                               "guest_expires_at": "2024-12-02", "callsign": None})
            # Issue 12's callsign rules: a collision after case folding and NFKC (kept,
            # grandfathered), a bidi override (cleared), a guest's callsign (cleared).
            _user(conn, ids, "twin", profile={"rank": "scout", "roles": None, "callsign": "ＤＯＣ"}, created="2025-01-02")
            _user(conn, ids, "bidi", profile={"rank": "scout", "roles": None, "callsign": "Ev\u202eil"})
            _user(conn, ids, "anon_profiled", profile={"rank": "vagrant", "roles": None, "callsign": "Ghost"},
                  anonymous=True)
            _user(conn, ids, "no_profile", profile=None)
            _user(conn, ids, "anonymous", profile=None, anonymous=True)
            # Issue 24: powers members gave themselves ("Dev Override"), a guest of
            # the predecessor's own kind (an email account with is_guest), a sign-up
            # during the cutover window (no predecessor profile: their trigger was
            # gone) asking for an adopted member's callsign, and a profile whose
            # auth user is gone (a project where that key was never made).
            _user(conn, ids, "self_founder", profile={"rank": "founder", "roles": ["Command"],
                                                      "callsign": "Self Made"}, created="2025-01-03")
            _user(conn, ids, "self_rescue", profile={"rank": "scout", "roles": ["Rescue"],
                                                     "callsign": "Lifeline"}, created="2025-01-03")
            _user(conn, ids, "is_guest_scout", profile={"rank": "scout", "roles": None, "is_guest": True,
                                                        "guest_expires_at": "2025-01-04", "callsign": "Visitor"},
                  created="2025-01-03")
            _user(conn, ids, "window_signup", profile=None, created="2025-12-20")
            conn.execute("UPDATE auth.users SET raw_user_meta_data = %s WHERE id = %s",
                         (json.dumps({"callsign": " pathfinder"}), ids["window_signup"]))
            conn.execute("ALTER TABLE public.profiles DROP CONSTRAINT profiles_id_fkey")
            ids["profile_no_user"] = str(conn.execute(
                "INSERT INTO public.profiles (id, rank, callsign) VALUES (gen_random_uuid(), 'scout', 'Gone') "
                "RETURNING id").fetchone()[0])

            squad = conn.execute("INSERT INTO public.squads (name) VALUES ('Alpha') RETURNING id").fetchone()[0]
            bonfire = conn.execute("INSERT INTO public.campfires (name, creator_id, is_permanent) "
                                   "VALUES ('Bonfire', %s, true) RETURNING id", (ids["founder"],)).fetchone()[0]
            conn.execute("INSERT INTO public.campfire_members (campfire_id, user_id) VALUES (%s, %s)",
                         (bonfire, ids["scout"]))

            def net(key, code, join, rx, tx, created, **extra):
                nid = conn.execute(
                    "INSERT INTO public.voice_nets (code, label, type, priority, created_at, min_rank_to_join, "
                    "min_rank_to_rx, min_rank_to_tx, linked_squad_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "RETURNING id",
                    (code, extra.get("label", f"Net {key}"), extra.get("type", "general"), extra.get("priority", 5),
                     created, join, rx, tx, extra.get("squad"))).fetchone()[0]
                ids[f"net_{key}"] = str(nid)
                return nid

            command = net("command", "command", "Founder", "Founder", None, "2024-12-01", type="command",
                          priority=1, squad=squad)
            general = net("general", "general", None, "Voyager", "SCOUT", "2024-12-01")
            open_ = net("open", "open-mic", "everyone", None, None, "2024-12-01")
            net("nocode", None, None, None, "", "2024-12-01", label=None)
            net("dup_old", "ops", "scout", "scout", "scout", "2024-12-01")
            net("dup_new", "ops", " Voyager ", "", "voyager", "2024-12-05")
            net("campfire", "campfire", "scout", "scout", "scout", "2024-12-01", type="campfire")

            for key, (src, dst, created) in {
                "bridge_ab": (command, general, "2024-12-01"), "bridge_ba": (general, command, "2024-12-02"),
                "bridge_self": (open_, open_, "2024-12-01"), "bridge_ac": (command, open_, "2024-12-01"),
            }.items():
                ids[key] = str(conn.execute(
                    "INSERT INTO public.voice_net_bridges (source_net_id, target_net_id, created_by, created_at) "
                    "VALUES (%s, %s, %s, %s) RETURNING id", (src, dst, ids["founder"], created)).fetchone()[0])

            conn.execute("INSERT INTO public.voice_presence (room_name, participant_identity, user_id, joined_at, "
                         "left_at, active) VALUES ('command', %s, %s, now() - interval '1 hour', NULL, true), "
                         "('general', %s, %s, now() - interval '2 days', now() - interval '1 day', false)",
                         (ids["founder"], ids["founder"], ids["scout"], ids["scout"]))

            conn.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) VALUES "
                         "(%s, %s, %s, %s), (NULL, 'https://fcm.googleapis.com/fcm/send/orphan', %s, %s)",
                         (ids["medic"], medic_endpoint, medic_p256dh, medic_auth, STD_P256DH, STD_AUTH))
            # The same endpoint twice once trimmed; a device of a profile that is not adopted.
            conn.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth) VALUES "
                         "(%s, %s, %s, %s), (%s, %s, %s, %s)",
                         (ids["scout"], " https://fcm.googleapis.com/fcm/send/twice", STD_P256DH, STD_AUTH,
                          ids["profile_no_user"], "https://fcm.googleapis.com/fcm/send/gone", STD_P256DH, STD_AUTH))
            conn.execute("INSERT INTO public.push_subscriptions (user_id, endpoint, p256dh, auth, created_at) "
                         "VALUES (%s, %s, %s, %s, now() + interval '1 minute')",
                         (ids["scout"], "https://fcm.googleapis.com/fcm/send/twice ", STD_P256DH, STD_AUTH))

            for old_type, payload in (("academy_request", None),
                                      ("academy_accept", {"requestId": str(uuid.uuid4())}),
                                      ("rescue_flare", {"flareType": "MEDICAL", "location": "Yela"}),
                                      ("combat_flare", {"location": "Daymar"}),
                                      ("mention", None)):
                for state in ("unsent", "read"):
                    nid = conn.execute(
                        "INSERT INTO public.notification_queue (recipient_id, type, title, message, payload, read_at, "
                        "sent_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, NULL, '2024-12-10') RETURNING id",
                        (ids["medic"], old_type, None if state == "unsent" else f"Old {old_type}",
                         f"{old_type} message", None if payload is None else json.dumps(payload),
                         None if state == "unsent" else "2024-12-11")).fetchone()[0]
                    ids[f"note_{old_type}_{state}"] = str(nid)

            ids["flare_orphan"] = str(conn.execute(
                "INSERT INTO public.flares (sender_id, type, location) VALUES (NULL, 'COMBAT', 'Lorville') "
                "RETURNING id").fetchone()[0])
            ids["flare_sent"] = str(conn.execute(
                "INSERT INTO public.flares (sender_id, type, location, status, created_at) VALUES (%s, 'MEDICAL', "
                "'Area18', 'RESOLVED', '2024-12-05') RETURNING id", (ids["scout"],)).fetchone()[0])

            # Locations that break the text rules: a newline, and only an ideographic space.
            ids["flare_newline"] = str(conn.execute(
                "INSERT INTO public.flares (sender_id, type, location) VALUES (%s, 'MEDICAL', %s) RETURNING id",
                (ids["scout"], "Hurston\nLorville gate")).fetchone()[0])
            ids["flare_blank"] = str(conn.execute(
                "INSERT INTO public.flares (sender_id, type, location) VALUES (%s, 'COMBAT', %s) RETURNING id",
                (ids["scout"], "\u3000")).fetchone()[0])
            long_name = "Salvage " + "x" * 112
            ids["skill_long_a"] = str(conn.execute(
                "INSERT INTO public.skills (name, created_at) VALUES (%s, '2024-12-01') RETURNING id",
                (long_name + " basics",)).fetchone()[0])
            ids["skill_long_b"] = str(conn.execute(
                "INSERT INTO public.skills (name, created_at) VALUES (%s, '2024-12-02') RETURNING id",
                (long_name + " advanced",)).fetchone()[0])
            skill = conn.execute("INSERT INTO public.skills (name, category) VALUES ('Mining', 'Industry') "
                                 "RETURNING id").fetchone()[0]
            ids["skill"] = str(skill)
            ids["skill_dup"] = str(conn.execute(
                "INSERT INTO public.skills (name, category, created_at) VALUES ('mining', 'Industry', now() + "
                "interval '1 minute') RETURNING id").fetchone()[0])
            conn.execute("INSERT INTO public.certifications (user_id, skill_id, certified_at) VALUES "
                         "(%s, %s, '2024-12-03')", (ids["founder"], skill))

            def request(key, status, created, guide=None, pod=None):
                ids[key] = str(conn.execute(
                    "INSERT INTO public.instruction_requests (cadet_id, skill_id, status, guide_id, sim_pod_id, "
                    "created_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                    (ids["scout"], skill, status, guide, pod, created)).fetchone()[0])

            request("req_pending_old", "PENDING", "2024-12-01")
            request("req_pending_new", "PENDING", "2024-12-04")
            request("req_active", "ACTIVE", "2024-12-02", guide=ids["founder"], pod="sim-pod-1a2b3c4d")
            request("req_completed", "COMPLETED", "2024-11-01", guide=ids["founder"])
            request("req_cancelled", "CANCELLED", "2024-11-02")
    return Predecessor(url, ids)
