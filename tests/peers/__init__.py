"""Protocol-level peers on 127.0.0.1 for services that cannot run here."""
