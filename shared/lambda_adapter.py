"""Lambda entry points: one mangum adapter per ASGI app, lifespan off.

Built at import time so the work happens in Lambda's init phase, and reused
by every invocation of the warm container. Inside Lambda the function's
settings are checked at init too, so a missing variable fails the deploy's
first invocation with one clear error naming it (never its value).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from mangum import Mangum


def lambda_handler(app: Callable, require: tuple[str, ...] = ()) -> Callable[[dict, Any], dict]:
    if require and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        from shared.config import get_settings

        get_settings().require(*require)
    return Mangum(app, lifespan="off")
