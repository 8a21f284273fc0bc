"""The packages built for this machine by nexus/package.py, and AWS's Runtime Interface Emulator.

Builds are cached by a digest of everything they read (nexus.lambda_emulator.cached_build),
in ~/.cache/nomadnexus/packages, so a rerun with nothing changed starts at once.
Without the emulator, awslambdaric, root or unshare these tests skip with one
line saying why; under CI=true that is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nexus import lambda_emulator

CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"the Lambda rehearsal cannot run under CI: {reason}", pytrace=False)
    pytest.skip(f"Lambda rehearsal skipped: {reason}")


@pytest.fixture(scope="session")
def rie() -> Path:
    try:
        return lambda_emulator.ensure_binary(build=True)
    except lambda_emulator.EmulatorUnavailable as e:
        unavailable(str(e))


@pytest.fixture(scope="session")
def host_packages() -> Path:
    """Every package for this machine's architecture and Python, with awslambdaric's runtime beside them."""
    problem = lambda_emulator.sandbox_problem()
    if problem:
        unavailable(problem)
    try:
        from importlib import metadata

        metadata.distribution("awslambdaric")
    except metadata.PackageNotFoundError:
        unavailable("awslambdaric is not installed (pyproject.toml's dev extras pin it): `make install`")

    return lambda_emulator.host_packages()
