"""Tests against a real livekit-server and real WebRTC clients, inside a loopback-only netns.

How these run (README, "Tests against a real LiveKit server"):
- Outside a network namespace (a plain `pytest` or `make test`), the tests collected here are
  replaced by stand-ins. The first one builds the pinned server if needed (that needs the
  network, so it happens here), then runs the real tests once in a child pytest under
  `unshare --net` with only `lo` up (nexus/netns.py). Each stand-in then reports its test's
  outcome from that run, so counts and failures read as usual.
- Inside the namespace (NEXUS_IN_NETNS=1 and only `lo`), the tests run for real: PostgreSQL,
  the functions, livekit-server and the clients all on 127.0.0.1 of the namespace.
- Without Go, `unshare` or the `livekit` package: outside CI they are skipped, with one loud
  line in the summary; with CI=true they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nexus import netns

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REPORT_ENV = "NEXUS_NETNS_REPORT"
INNER_TIMEOUT_SECONDS = 900
IN_NETNS = netns.in_loopback_netns()
if os.environ.get(netns.MARK) == "1" and not IN_NETNS:
    raise RuntimeError("NEXUS_IN_NETNS is set but this process sees more than loopback")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# -- outside the namespace: stand-ins that run the real tests once in a child pytest ------------

class _Run:
    """The one child run for this session (lazily started by the first stand-in)."""

    def __init__(self, config: pytest.Config, nodeids: list[str]):
        self.config = config
        self.nodeids = nodeids
        self.outcomes: dict[str, dict] | None = None
        self.unavailable: str | None = None
        self.failure: str | None = None
        self.log: Path | None = None

    def ensure(self) -> None:
        if self.outcomes is not None or self.unavailable or self.failure:
            return
        self.outcomes = {}  # never twice, even if this run is interrupted
        self.unavailable = _unavailable_reason()
        if self.unavailable:
            return
        from nexus.livekit_server import ServerUnavailable, ensure_binary

        try:
            binary = ensure_binary()  # outside the namespace: the build needs the network
        except ServerUnavailable as e:
            self.unavailable = str(e)
            return
        workdir = Path(tempfile.mkdtemp(prefix="nexus-netns-"))
        report, self.log = workdir / "outcomes.json", workdir / "pytest.log"
        env = {**os.environ, REPORT_ENV: str(report), "NEXUS_LIVEKIT_SERVER_BIN": str(binary)}
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                "--rootdir", str(ROOT), *self.nodeids]
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\n[livekit_server] running {len(self.nodeids)} tests inside a loopback-only "
                                f"network namespace (log: {self.log})")
        started = time.monotonic()
        with open(self.log, "wb") as log:
            try:
                proc = netns.run(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 timeout=INNER_TIMEOUT_SECONDS)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
        try:
            self.outcomes = json.loads(report.read_text())
        except (OSError, ValueError):
            self.outcomes = {}
        if code is None:
            self.failure = f"the namespace run took longer than {INNER_TIMEOUT_SECONDS} s"
        elif not self.outcomes:
            self.failure = f"the namespace run reported nothing (exit {code})"
        if self.failure:
            self.failure += f"; its output ({self.log}):\n" + _tail(self.log)
        elif reporter is not None:
            reporter.write_line(f"[livekit_server] namespace run finished in {time.monotonic() - started:.0f} s "
                                f"(exit {code})")


def _tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _unavailable_reason() -> str | None:
    try:
        import livekit.rtc  # noqa: F401
    except ImportError as e:
        return f"the `livekit` client package is not installed ({e}); run `make install`"
    return netns.unavailable_reason()


class _ProxyFailure(Exception):
    pass


class NetnsStandIn(pytest.Item):
    """Reports the outcome its namesake had in the namespace run."""

    def __init__(self, *, run: _Run, original_nodeid: str, **kwargs):
        super().__init__(**kwargs)
        self.run = run
        self.original_nodeid = original_nodeid

    def runtest(self) -> None:
        self.run.ensure()
        if self.run.unavailable:
            message = f"real LiveKit tests cannot run here: {self.run.unavailable}"
            if _in_ci():
                raise _ProxyFailure(message + " (CI=true: a missing server is a failure)")
            self.config.stash.setdefault(_SKIPPED, []).append(self.run.unavailable)
            pytest.skip(message)
        if self.run.failure:
            raise _ProxyFailure(self.run.failure)
        outcome = self.run.outcomes.get(self.original_nodeid)
        if outcome is None:
            raise _ProxyFailure(f"{self.original_nodeid} did not run in the namespace (log: {self.run.log})")
        if outcome["outcome"] == "skipped":
            pytest.skip(outcome.get("reason") or "skipped in the namespace run")
        if outcome["outcome"] == "failed":
            raise _ProxyFailure(outcome.get("longrepr") or "failed in the namespace run")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, _ProxyFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"[netns] {self.original_nodeid}"


_SKIPPED = pytest.StashKey[list]()


def _mine(item: pytest.Item) -> bool:
    try:
        return Path(item.path).resolve().is_relative_to(HERE)
    except (AttributeError, ValueError):
        return False


@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session, config, items):
    if IN_NETNS:
        return
    mine = [item for item in items if _mine(item)]
    if not mine:
        return
    run = _Run(config, [item.nodeid for item in mine])
    replaced = {}
    for item in mine:
        stand_in = NetnsStandIn.from_parent(item.parent, name=item.name, run=run, original_nodeid=item.nodeid)
        for marker in item.iter_markers():
            stand_in.add_marker(marker)
        replaced[id(item)] = stand_in
    items[:] = [replaced.get(id(item), item) for item in items]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reasons = config.stash.get(_SKIPPED, [])
    if reasons:
        terminalreporter.write_line(
            f"!!!!! REAL LIVEKIT TESTS SKIPPED ({len(reasons)}): {reasons[0]} "
            "(with CI=true this is a failure) !!!!!", red=True, bold=True)


# -- inside the namespace: record each outcome for the stand-ins --------------------------------

_outcomes: dict[str, dict] = {}


def pytest_runtest_logreport(report):
    if not IN_NETNS or not os.environ.get(REPORT_ENV):
        return
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed"})
    if report.failed:
        entry["outcome"] = "failed"
        entry["longrepr"] = (entry.get("longrepr", "") + f"\n[{report.when}] " + str(report.longrepr)).strip()
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        longrepr = report.longrepr
        entry["reason"] = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get(REPORT_ENV)
    if IN_NETNS and path:
        Path(path).write_text(json.dumps(_outcomes))


if IN_NETNS:
    from tests.livekit_server.fixtures import *  # noqa: E402,F401,F403  the real fixtures
