"""`make dev`'s environment (nexus/devenv.py): what it passes through from the developer's shell."""

from __future__ import annotations

import importlib

import pytest


@pytest.fixture
def devenv(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXUS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LIVEKIT_URL", raising=False)
    import nexus.devenv

    yield importlib.reload(nexus.devenv)
    monkeypatch.undo()
    importlib.reload(nexus.devenv)


# `LIVEKIT_PUBLISH_AFTER_JOIN_CHECK=true make dev` runs the functions in strict mode; unset, or
# anything but a true value, is the default mode.
@pytest.mark.parametrize("given,expected", [(None, "false"), ("true", "true"), ("1", "true"), ("TRUE", "true"),
                                            ("no", "false"), ("", "false")])
def test_strict_mode_passes_through(devenv, monkeypatch, given, expected):
    if given is None:
        monkeypatch.delenv("LIVEKIT_PUBLISH_AFTER_JOIN_CHECK", raising=False)
    else:
        monkeypatch.setenv("LIVEKIT_PUBLISH_AFTER_JOIN_CHECK", given)
    assert devenv.dev_environment()["LIVEKIT_PUBLISH_AFTER_JOIN_CHECK"] == expected
