"""The notification fixtures (VAPID keys, loopback push service), reused here."""

from tests.integration.notifications.conftest import push_env, push_service, vapid_keys  # noqa: F401
