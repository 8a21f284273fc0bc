"""The shared error envelope: {"error": CODE, "message": sentence, "details": {...}}."""

from __future__ import annotations

from typing import Any

STATUS_BY_CODE = {
    "BAD_REQUEST": 400,
    "UNAUTHORIZED": 401,
    "INSUFFICIENT_CLEARANCE": 403,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RATE_LIMITED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}


class ApiError(Exception):
    """Raised anywhere in a request; the HTTP layer turns it into the envelope."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown error code {code}")
        super().__init__(message)
        self.code = code
        self.status = STATUS_BY_CODE[code]
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        details = self.details
        retry_after = self.headers.get("Retry-After")
        if retry_after is not None and retry_after.isascii() and retry_after.isdigit():
            # 429 and 503 alike: browser code that cannot read the header reads this
            details = {**(details or {}), "retryAfter": int(retry_after)}
        if details:
            out["details"] = details
        return out


def bad_request(message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError("BAD_REQUEST", message, details)


def unauthorized(message: str = "A valid access token is required.") -> ApiError:
    return ApiError("UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


def unavailable(message: str = "A dependency is unavailable; retry shortly.", retry_after: int = 5) -> ApiError:
    return ApiError("UNAVAILABLE", message, headers={"Retry-After": str(retry_after)})
