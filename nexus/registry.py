"""Where each function lives, for the local gateway and the dev timers.

The paths match the runbook's function names and template.yaml's handlers.
"""

from __future__ import annotations

import importlib
from typing import Any

HTTP_FUNCTIONS: dict[str, str] = {
    "livekit-token": "functions.livekit_token.app:app",
    "livekit-webhook": "functions.livekit_webhook.app:app",
    "net-bridge": "functions.net_bridge.app:app",
    "academy-request": "functions.academy.request:app",
    "academy-accept": "functions.academy.accept:app",
    "notifications-subscribe": "functions.notifications.subscribe:app",
    "handle-rescue-request": "functions.notifications.rescue:app",
    "health": "functions.health.app:app",
    "member-admin": "functions.member_admin.app:app",
}

# name -> (handler path, interval in seconds) for `make dev`'s timers
SCHEDULED_FUNCTIONS: dict[str, tuple[str, int]] = {
    "sim-pod-expiry": ("functions.academy.expiry:handler", 60),
    "livekit-webhook-worker": ("functions.livekit_webhook.worker:handler", 60),
    "presence-reconciler": ("functions.livekit_webhook.reconciler:handler", 300),
    "push-fanout": ("functions.notifications.fanout:handler", 60),
    "livekit-access-sync": ("functions.member_admin.sync:handler", 60),
}


def load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
