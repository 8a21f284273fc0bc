"""member-admin: a founder or pioneer changes a member's rank and roles, audited.

POST {userId, rank?, addRoles?, removeRoles?, reason} with `Authorization:
Bearer <Supabase token>`. One SQL call (`member_admin_change`) locks actor and
member, checks the rules (founder+, not brigged, not yourself, only members
strictly below you, nobody raised to your rank or above), changes the profile
and appends the audit row; a refusal writes nothing. Role names match
case-insensitively and are stored canonically (`brig` is `brigged`).

The change queues a LiveKit access job in the same transaction (a trigger);
this handler applies it before answering, for at most
LIVEKIT_ACCESS_INLINE_BUDGET_SECONDS, like the flare's inline delivery: a
brigged member is removed from every room they are in, a demoted or promoted
one gets new permissions in place. Whatever is not applied by then, the
`livekit-access-sync` schedule applies (shared/livekit_access.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import db
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError, bad_request
from shared.http import JsonApp, Request, Response
from shared.lambda_adapter import lambda_handler
from shared.livekit_access import apply_now
from shared.observability import count
from shared.text import ShownText
from shared.text_rules import WHITESPACE, Stripped, TextRule

Rank = Literal["vagrant", "scout", "voyager", "founder", "pioneer"]
# 1-40 characters once stripped: a letter, then letters, digits, spaces, '_', '.' or '-'.
ROLE_NAME = TextRule("role-name", f"^[{WHITESPACE}]*[A-Za-z][A-Za-z0-9 _.-]{{0,39}}[{WHITESPACE}]*$",
                     "role names are 1-40 letters, digits, spaces, '_', '.' or '-', starting with a letter")
RoleName = Annotated[str, ROLE_NAME]


def _something_to_change_schema(schema: dict[str, Any]) -> None:
    # The model validator's rule, for openapi.json: a rank (not null), or at least one role to add
    # or to remove.
    schema["anyOf"] = [
        {"required": ["rank"], "properties": {"rank": {"type": "string"}}},
        {"required": ["addRoles"], "properties": {"addRoles": {"minItems": 1}}},
        {"required": ["removeRoles"], "properties": {"removeRoles": {"minItems": 1}}},
    ]


class MemberChange(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, json_schema_extra=_something_to_change_schema)

    userId: UUID
    rank: Rank | None = None
    addRoles: list[RoleName] = Field(default_factory=list, max_length=16)
    removeRoles: list[RoleName] = Field(default_factory=list, max_length=16)
    # The audit holds it and founders read it: the text rules others are shown by (issue 24).
    reason: Annotated[ShownText, Stripped(500)]

    @model_validator(mode="after")
    def _something_to_change(self) -> "MemberChange":
        if self.rank is None and not self.addRoles and not self.removeRoles:
            raise ValueError("give a rank, addRoles or removeRoles")
        return self


# Response models: the contract in openapi.json; the handler builds the dicts itself.
class MemberState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: Rank
    roles: list[str]


class LiveKitFollow(BaseModel):
    """What this request did in LiveKit before answering; `pending` means the schedule finishes it."""

    model_config = ConfigDict(extra="forbid")

    applied: bool
    removed: int = Field(ge=0)
    updated: int = Field(ge=0)
    pending: bool


class MemberChanged(BaseModel):
    model_config = ConfigDict(extra="forbid")

    userId: UUID
    rank: Rank
    roles: list[str]
    before: MemberState
    changed: bool
    auditId: int
    livekit: LiveKitFollow


_REFUSALS: dict[str, tuple[str, str]] = {
    "NO_PROFILE": ("FORBIDDEN", "Your account has no member profile yet."),
    "BRIGGED": ("FORBIDDEN", "You are in the brig and cannot change members."),
    "SELF": ("FORBIDDEN", "You cannot change your own rank or roles."),
    "MEMBER_NOT_FOUND": ("NOT_FOUND", "No member has that id."),
}


def _refusal(result: dict[str, Any]) -> ApiError:
    error = result["error"]
    if error in _REFUSALS:
        code, message = _REFUSALS[error]
        return ApiError(code, message)
    if error == "INSUFFICIENT_CLEARANCE":
        return ApiError("INSUFFICIENT_CLEARANCE", "Changing members needs rank founder or higher.",
                        {"required": result["required"], "rank": result["rank"]})
    if error == "MEMBER_OUTRANKS":
        return ApiError("INSUFFICIENT_CLEARANCE", "You can only change members ranked below you.",
                        {"rank": result["rank"], "memberRank": result["memberRank"]})
    if error == "RANK_TOO_HIGH":
        return ApiError("INSUFFICIENT_CLEARANCE", "You cannot raise a member to your own rank or above.",
                        {"rank": result["rank"], "requested": result["requested"]})
    return bad_request(str(result.get("message") or "The change is not valid."),
                       {"fields": {str(result.get("field") or "body"): str(result.get("message") or "invalid")}})


def change_member(request: Request) -> Response:
    settings = get_settings().require("database", "auth", "livekit")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: MemberChange = request.model(MemberChange, settings.MAX_BODY_BYTES)

    result: dict[str, Any] = db.call(
        "member_admin_change", p_actor_id=caller.user_id, p_member_id=str(body.userId), p_rank=body.rank,
        p_add_roles=body.addRoles, p_remove_roles=body.removeRoles, p_reason=body.reason)
    if "error" in result:
        raise _refusal(result)

    job = result.get("accessJobId")
    summary = apply_now([job], settings.LIVEKIT_ACCESS_INLINE_BUDGET_SECONDS, settings) if job else None
    applied = summary is not None and job in summary.done_ids
    outcomes = summary.outcomes if summary is not None else {}
    count("MembersChanged", 1, function="member-admin")
    return Response(200, {
        "userId": result["userId"],
        "rank": result["rank"],
        "roles": result["roles"],
        "before": result["before"],
        "changed": result["changed"],
        "auditId": result["auditId"],
        "livekit": {"applied": applied, "removed": outcomes.get("removed", 0),
                    "updated": outcomes.get("updated", 0), "pending": bool(job) and not applied},
    })


app = JsonApp("member-admin", {"POST": change_member}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth", "livekit"))
