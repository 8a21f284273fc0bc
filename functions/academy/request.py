"""academy-request: a member asks for a guide in a skill.

POST {skillId} with `Authorization: Bearer <Supabase token>`. Any member not
in the brig; one open request per cadet and skill (a repeat answers 409 with
the existing request's id); at most ACADEMY_REQUEST_RATE_LIMIT new requests
per member per ACADEMY_REQUEST_RATE_WINDOW_SECONDS (429 with Retry-After,
nothing written). Every guide certified for the skill, except the
cadet, gets an ACADEMY_REQUEST notification. All one SQL call
(`public.academy_request_create`). Answers 201 {requestId, status: "PENDING"}.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared import db
from shared.auth import authenticate, get_verifier
from shared.config import get_settings
from shared.errors import ApiError
from shared.http import JsonApp, Request, Response
from shared.lambda_adapter import lambda_handler


class AcademyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    skillId: UUID


class AcademyRequestCreated(BaseModel):
    """The request is open; every guide certified for the skill was notified."""

    model_config = ConfigDict(extra="forbid")

    requestId: UUID
    status: Literal["PENDING"]


def _refusal(result: dict) -> ApiError:
    error = result["error"]
    if error == "SKILL_NOT_FOUND":
        return ApiError("NOT_FOUND", "There is no skill with that id.")
    if error == "OPEN_REQUEST":
        return ApiError("CONFLICT", "You already have an open request for this skill.",
                        {"requestId": result["requestId"], "status": result["status"]})
    if error == "BRIGGED":
        return ApiError("FORBIDDEN", "You are in the brig and cannot request training.")
    if error == "RATE_LIMITED":
        retry = int(result["retryAfter"])
        return ApiError("RATE_LIMITED", f"You asked for training too often; you can ask again in {retry} s.",
                        {"retryAfter": retry}, headers={"Retry-After": str(retry)})
    return ApiError("FORBIDDEN", "Your account has no member profile yet.")  # NO_PROFILE


def request_training(request: Request) -> Response:
    settings = get_settings().require("database", "auth")
    caller = authenticate(get_verifier(), request.header("authorization"))
    request.user_id = caller.user_id
    body: AcademyRequest = request.model(AcademyRequest, settings.MAX_BODY_BYTES)

    result = db.call("academy_request_create", p_user_id=caller.user_id, p_skill_id=str(body.skillId),
                     p_max_age_seconds=settings.ACADEMY_REQUEST_MAX_AGE_SECONDS,
                     p_rate_limit=settings.ACADEMY_REQUEST_RATE_LIMIT,
                     p_rate_window_seconds=settings.ACADEMY_REQUEST_RATE_WINDOW_SECONDS)
    if "error" in result:
        raise _refusal(result)
    return Response(201, {"requestId": result["requestId"], "status": result["status"]})


app = JsonApp("academy-request", {"POST": request_training}, cors_origins=lambda: get_settings().CORS_ALLOW_ORIGINS)
handler = lambda_handler(app, require=("database", "auth"))
