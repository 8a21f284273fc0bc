"""`nexus admin`: operator changes for a project where no founder exists yet.

  nexus admin member USER [--rank R] [--add-role X] [--remove-role X] --reason TEXT
  nexus admin net create|set CODE [--label L] [--join R] [--rx R] [--tx R]
  nexus admin skill add NAME
  nexus admin certify USER SKILL
  nexus admin holds
  nexus admin hold confirm|decline USER --reason TEXT
  nexus admin callsign USER CALLSIGN --reason TEXT

Every command reads DATABASE_URL and calls the same SQL function the HTTP
path does, so the rules, the audit row and the LiveKit access job are the
same; the audit records the actor as `operator` with the `--as NAME` label
(default: $USER). USER is a member's id or their email. The change reaches
LiveKit through the `livekit-access-sync` schedule.

After adopting the predecessor's database (docs/cutover.md), `holds` lists the
ranks above scout, the responder roles and the certifications held until an operator confirms
them, and the predecessor's guests with their guest_expires_at; `hold confirm`
gives a member back what they held, `hold decline` leaves them as they are.
Both are audited like `member`; a member changed since the adoption, or
deleted, is refused.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import uuid
from typing import Any

RANKS = ["vagrant", "scout", "voyager", "founder", "pioneer"]


def _text(low: int, high: int):
    """argparse type: text the audit can hold (its CHECKs: a label of 1-120, a reason of 1-500 characters,
    following the text rules others are shown by: no control, format or separator characters)."""
    def check(value: str) -> str:
        from shared.text import problem

        stripped = value.strip(" ")
        if not low <= len(stripped) <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high} characters, not {len(stripped)}")
        reason = problem(stripped)
        if reason:
            raise argparse.ArgumentTypeError(reason)
        return value
    return check


def plain(value: Any) -> str:
    """Text for the operator's terminal: a character others must not be shown (control, escape,
    bidi, zero-width: shared/text.py) appears as \\uXXXX. Members wrote what the adoption keeps."""
    from shared.text import problem

    text = "-" if value is None or value == "" else str(value)
    return "".join(c if problem("a" + c) is None else f"\\u{ord(c):04x}" for c in text)


def _user(value: str) -> str:
    """argparse type: a member's id (a UUID) or an email; anything else is a usage error."""
    from shared.text import problem

    value = value.strip()
    try:
        return str(uuid.UUID(value))
    except ValueError:
        if "@" in value and len(value) <= 320 and problem(value) is None:
            return value
    raise argparse.ArgumentTypeError(f"{value!r} is neither a member id (a UUID) nor an email")


def _connect() -> Any:
    import psycopg

    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("nexus admin: DATABASE_URL is not set")
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


def _member_id(conn: Any, user: str) -> str | None:
    try:
        return str(uuid.UUID(user))
    except ValueError:
        row = conn.execute("SELECT id FROM auth.users WHERE lower(email) = lower(%s)", (user,)).fetchone()
        return str(row[0]) if row else None


def _call(conn: Any, function: str, **args: Any) -> dict[str, Any]:
    from psycopg.types.json import Jsonb

    named = ", ".join(f"{k} => %({k})s" for k in args)
    params = {k: (Jsonb(v) if isinstance(v, (list, dict)) else v) for k, v in args.items()}
    return conn.execute(f"SELECT public.{function}({named})", params).fetchone()[0]


def _finish(result: dict[str, Any]) -> int:
    print(json.dumps(result, indent=2, default=str))
    return 1 if "error" in result else 0


def cmd_member(conn: Any, args: argparse.Namespace) -> int:
    member = _member_id(conn, args.user)
    if member is None:
        return _finish({"error": "MEMBER_NOT_FOUND", "user": args.user})
    if args.rank is None and not args.add_role and not args.remove_role:
        print("nexus admin member: give --rank, --add-role or --remove-role", file=sys.stderr)
        return 2
    return _finish(_call(conn, "member_admin_change", p_actor_id=None, p_member_id=member, p_rank=args.rank,
                         p_add_roles=args.add_role, p_remove_roles=args.remove_role, p_reason=args.reason,
                         p_operator=args.as_name))


def cmd_net(conn: Any, args: argparse.Namespace) -> int:
    return _finish(_call(conn, "admin_net_upsert", p_actor_id=None, p_operator=args.as_name, p_code=args.code,
                         p_create=args.action == "create", p_label=args.label, p_join=args.join, p_rx=args.rx,
                         p_tx=args.tx, p_reason=args.reason))


def cmd_skill(conn: Any, args: argparse.Namespace) -> int:
    return _finish(_call(conn, "admin_skill_add", p_actor_id=None, p_operator=args.as_name, p_name=args.name,
                         p_reason=args.reason))


def cmd_certify(conn: Any, args: argparse.Namespace) -> int:
    member = _member_id(conn, args.user)
    if member is None:
        return _finish({"error": "MEMBER_NOT_FOUND", "user": args.user})
    return _finish(_call(conn, "admin_certify", p_actor_id=None, p_operator=args.as_name, p_member_id=member,
                         p_skill=args.skill, p_reason=args.reason))


def cmd_holds(conn: Any, args: argparse.Namespace) -> int:
    result = _call(conn, "adoption_holds")
    if args.json:
        return _finish(result)
    if not result["adopted"]:
        print("no adoption record on this database: nothing is held")
        return 0
    pending = [h for h in result["holds"] if h["status"] == "pending"]
    print(f"awaiting confirmation ({len(pending)}; responders first: no flare reaches a held responder):")
    for h in pending:
        held = ", ".join(([f"rank {h['heldRank']}"] if h["heldRank"] else [])
                         + ([f"roles {' '.join(h['heldRoles'])}"] if h["heldRoles"] else [])
                         + ([f"certifications of {len(h['heldSkills'])} skill(s)"] if h["heldSkills"] else []))
        gone = "" if h["memberExists"] else "  (deleted)"
        print(f"  {h['userId']}  {plain(h['callsign'])}  {plain(h['email'])}  held: {plain(held)}  "
              f"lives as {h['liveRank']}{gone}")
    settled = [h for h in result["holds"] if h["status"] != "pending"]
    print(f"settled ({len(settled)}):")
    for h in settled:
        print(f"  {h['userId']}  {plain(h['callsign'])}  {h['status']}  audit {h['auditId']}")
    print(f"the predecessor's guests, now vagrants without a callsign ({len(result['guests'])}):")
    for g in result["guests"]:
        state = ("no expiry recorded: taken as expired" if g["guestExpiresAt"] is None
                 else "expired" if g["expired"] else "not expired")
        gone = "" if g["memberExists"] else "  (deleted)"
        print(f"  {g['userId']}  {plain(g['email'])}  guest_expires_at {g['guestExpiresAt'] or '-'} ({state}){gone}")
    return 0


def cmd_hold(conn: Any, args: argparse.Namespace) -> int:
    member = _member_id(conn, args.user)
    if member is None:
        return _finish({"error": "MEMBER_NOT_FOUND", "user": args.user})
    return _finish(_call(conn, "adoption_hold_settle", p_member_id=member, p_confirm=args.action == "confirm",
                         p_operator=args.as_name, p_reason=args.reason))


def cmd_callsign(conn: Any, args: argparse.Namespace) -> int:
    member = _member_id(conn, args.user)
    if member is None:
        return _finish({"error": "MEMBER_NOT_FOUND", "user": args.user})
    return _finish(_call(conn, "admin_callsign_set", p_operator=args.as_name, p_member_id=member,
                         p_callsign=args.callsign, p_reason=args.reason))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nexus admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--as", dest="as_name", default=None, type=_text(1, 120),
                        help="operator label for the audit (default: $USER)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_member = sub.add_parser("member", parents=[common], help="change a member's rank or roles")
    p_member.add_argument("user", type=_user, help="member id or email")
    p_member.add_argument("--rank", choices=RANKS)
    p_member.add_argument("--add-role", action="append", default=[])
    p_member.add_argument("--remove-role", action="append", default=[])
    p_member.add_argument("--reason", required=True, type=_text(1, 500))
    p_member.set_defaults(func=cmd_member)

    p_net = sub.add_parser("net", parents=[common], help="create a voice net or change one")
    p_net.add_argument("action", choices=["create", "set"])
    p_net.add_argument("code")
    p_net.add_argument("--label")
    p_net.add_argument("--join", choices=RANKS)
    p_net.add_argument("--rx", choices=RANKS)
    p_net.add_argument("--tx", choices=RANKS)
    p_net.add_argument("--reason", type=_text(1, 500))
    p_net.set_defaults(func=cmd_net)

    p_skill = sub.add_parser("skill", parents=[common], help="add a skill")
    p_skill.add_argument("action", choices=["add"])
    p_skill.add_argument("name")
    p_skill.add_argument("--reason", type=_text(1, 500))
    p_skill.set_defaults(func=cmd_skill)

    p_cert = sub.add_parser("certify", parents=[common], help="certify a member as a guide for a skill")
    p_cert.add_argument("user", type=_user, help="member id or email")
    p_cert.add_argument("skill", help="skill name")
    p_cert.add_argument("--reason", type=_text(1, 500))
    p_cert.set_defaults(func=cmd_certify)

    p_holds = sub.add_parser("holds", parents=[common],
                             help="after the adoption: powers awaiting confirmation, and the predecessor's guests")
    p_holds.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p_holds.set_defaults(func=cmd_holds)

    p_hold = sub.add_parser("hold", parents=[common], help="confirm or decline what an adopted member held")
    p_hold.add_argument("action", choices=["confirm", "decline"])
    p_hold.add_argument("user", type=_user, help="member id or email")
    p_hold.add_argument("--reason", required=True, type=_text(1, 500))
    p_hold.set_defaults(func=cmd_hold)

    p_callsign = sub.add_parser("callsign", parents=[common],
                                help="set a member's callsign, under the callsign rules (look-alikes refused)")
    p_callsign.add_argument("user", type=_user, help="member id or email")
    p_callsign.add_argument("callsign", type=_text(1, 64))
    p_callsign.add_argument("--reason", required=True, type=_text(1, 500))
    p_callsign.set_defaults(func=cmd_callsign)

    args = parser.parse_args(argv)
    if args.as_name is None:
        label = (os.environ.get("USER") or getpass.getuser() or "operator")[:120]
        try:
            args.as_name = _text(1, 120)(label)
        except argparse.ArgumentTypeError as e:
            parser.error(f"the operator label {label!r} from $USER: {e}; give --as")
    with _connect() as conn:
        return args.func(conn, args)
