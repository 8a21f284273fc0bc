"""The rank ladder and the rules built on it. Pure Python: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

RANKS = ("vagrant", "scout", "voyager", "founder", "pioneer")
_LEVEL = {name: i for i, name in enumerate(RANKS)}

BRIGGED = "brigged"

# The whitespace a role name is trimmed of, in SQL too (public.canonical_role): shared/text_rules.py's
# WHITESPACE, the characters str.strip() removes less the C0 separators U+001C..U+001F.
ROLE_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) \
    + "\u2028\u2029\u202f\u205f\u3000"
_CANONICAL = {"brig": BRIGGED, "brigged": BRIGGED, "medic": "Medic", "rescue": "Rescue"}


def level(rank: str) -> int:
    try:
        return _LEVEL[rank]
    except KeyError:
        raise ValueError(f"unknown rank {rank!r}") from None


def at_least(rank: str, minimum: str) -> bool:
    return level(rank) >= level(minimum)


def canonical_role(role: str) -> str:
    """The one spelling a role is stored in (docs/endpoints.md): `brigged` (also for `brig`),
    `Medic`, `Rescue` in any case; any other role as written. Surrounding whitespace never counts.
    SQL's public.canonical_role is the same rule (tests hold the two together)."""
    trimmed = role.strip(ROLE_WHITESPACE)
    return _CANONICAL.get(trimmed.lower(), trimmed)


def is_brigged(roles: list[str | None] | None) -> bool:
    """`brig` or `brigged` in any case or padding. The database stores roles canonically
    (a trigger); this also reads a row written with triggers off."""
    return any(r is not None and canonical_role(r) == BRIGGED for r in roles or ())


@dataclass(frozen=True)
class VoiceGrants:
    can_join: bool
    can_subscribe: bool
    can_publish: bool
    can_publish_data: bool

    def as_response(self) -> dict[str, bool]:
        return {
            "canJoin": self.can_join,
            "canSubscribe": self.can_subscribe,
            "canPublish": self.can_publish,
            "canPublishData": self.can_publish_data,
        }


def net_grants(rank: str, min_join: str, min_rx: str, min_tx: str) -> VoiceGrants:
    """Grants on a voice net for a member of `rank`.

    join needs min_join, subscribe min_rx, publish and data min_tx; a vagrant
    never publishes whatever the net says.
    """
    can_join = at_least(rank, min_join)
    if not can_join:
        return VoiceGrants(False, False, False, False)
    can_tx = at_least(rank, min_tx) and rank != "vagrant"
    return VoiceGrants(
        can_join=True,
        can_subscribe=at_least(rank, min_rx),
        can_publish=can_tx,
        can_publish_data=can_tx,
    )


# Both members of a live sim pod talk freely; a vagrant still never publishes.
def sim_pod_grants(rank: str) -> VoiceGrants:
    can_tx = rank != "vagrant"
    return VoiceGrants(True, True, can_tx, can_tx)
