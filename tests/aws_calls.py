"""Every AWS call our code makes in the suite, held against the role template.yaml gives it.

A pytest plugin (tests/conftest.py loads it). Each botocore client made in
this process gets a `before-parameter-build` hook, so whatever answers the
call (moto, a Stubber, a loopback endpoint, nothing at all) the call is seen
with its service, operation and parameters. A call is ours when code under
shared/ or functions/ is on the stack (a test's own setup calls are not);
it is attributed to the functions that make it: those whose environment, as
template.yaml sets it for stack parameters holding these references, carries
exactly the secret references it was made under (and the function whose app
is on the stack, when one is). tests/iam.py says what their roles allow.

A test during which one of our calls would be refused fails, naming the
call, the function and the missing grant. The terminal summary lists what
was recorded and which grants of the functions seen no call used.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from tests import iam

ROOT = Path(__file__).resolve().parents[1]
OURS = (str(ROOT / "shared") + os.sep, str(ROOT / "functions") + os.sep)
MOTO_ACCOUNT = os.environ.get("MOTO_ACCOUNT_ID", "123456789012")

_lock = threading.Lock()
RECORDED: list[iam.Call] = []
VERDICTS: list[iam.Verdict] = []
_current_test = ""
_installed = False


def _caller() -> tuple[bool, dict[str, str] | None, str | None]:
    """(made by our code, the environ SecretCache.resolve was given, the JsonApp serving)."""
    ours, environ, function = False, None, None
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(OURS):
            ours = True
            self = frame.f_locals.get("self")
            kind = type(self).__name__
            if environ is None and kind == "SecretCache" and frame.f_code.co_name == "resolve":
                environ = dict(frame.f_locals.get("environ") or {})
            if function is None and kind == "JsonApp":
                function = getattr(self, "name", None)
        frame = frame.f_back
    return ours, environ, function


def _kms_keys(service: str, region: str, params: dict) -> dict[str, str]:
    """resource ARN -> the customer managed KMS key ARN moto holds it encrypted with."""
    out: dict[str, str] = {}
    try:
        if service == "ssm":
            from moto.ssm.models import ssm_backends

            backend = ssm_backends[MOTO_ACCOUNT][region]
            for name in params.get("Names") or [params.get("Name")]:
                found = backend.get_parameter(name)
                if found is not None and found.parameter_type == "SecureString":
                    key = _key_arn(found.keyid, region)
                    if key:
                        call = iam.Call(service, "", {}, region, MOTO_ACCOUNT, {})
                        out[iam.ssm_parameter_arn(name, call)] = key
        elif service == "secretsmanager":
            from moto.secretsmanager.models import secretsmanager_backends

            backend = secretsmanager_backends[MOTO_ACCOUNT][region]
            secret_id = params.get("SecretId")
            if backend._is_valid_identifier(secret_id):
                secret = backend.secrets[secret_id]
                key = _key_arn(getattr(secret, "kms_key_id", None), region)
                if key:
                    out[secret_id] = key
    except (ImportError, KeyError):  # not in moto (a Stubber, a loopback endpoint): no key known
        return out
    return out


def _key_arn(key: str | None, region: str) -> str | None:
    """The key's ARN when it is customer managed; None for the AWS managed aws/ssm, aws/secretsmanager."""
    if not key or key.startswith("alias/aws/"):
        return None
    from moto.kms.models import kms_backends

    backend = kms_backends[MOTO_ACCOUNT][region]
    key_id = backend.any_id_to_key_id(key)
    if key_id.startswith("alias/aws/"):
        return None
    return backend.keys[key_id].arn


def _record(client_ref: "weakref.ref[Any]", params: dict, model: Any, **_: Any) -> None:
    ours, environ, function = _caller()
    if not ours:
        return
    client = client_ref()
    region = client.meta.region_name if client is not None else "us-east-1"
    service = client.meta.service_model.service_name if client is not None else "?"
    refs = iam.secret_refs(environ if environ is not None else os.environ)
    call = iam.Call(service, model.name, dict(params), region, MOTO_ACCOUNT, refs, function,
                    _kms_keys(service, region, params), _current_test)
    verdict = iam.check(call)
    with _lock:
        RECORDED.append(call)
        VERDICTS.append(verdict)


def install() -> None:
    """Hook every botocore client made from now on (idempotent)."""
    global _installed
    if _installed:
        return
    try:
        from botocore.session import Session
    except ImportError:
        return
    original = Session.create_client

    def create_client(self, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        ref = weakref.ref(client)
        client.meta.events.register("before-parameter-build", lambda **kw: _record(ref, **kw))
        return client

    Session.create_client = create_client  # type: ignore[method-assign]
    _installed = True


install()


def refused_since(start: int) -> list[str]:
    lines = []
    for verdict in VERDICTS[start:]:
        for logical_id, need in verdict.refused:
            lines.append(f"{logical_id} ({iam.function_name(logical_id)}) would be refused {need}: "
                         f"{verdict.call.service}:{verdict.call.operation} {verdict.call.params}")
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current_test
    _current_test = item.nodeid
    item.stash[_start_key] = len(VERDICTS)
    try:
        return (yield)
    finally:
        _current_test = ""


_start_key = pytest.StashKey[int]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when in ("call", "teardown"):
        start = item.stash.get(_start_key, len(VERDICTS))
        refused = refused_since(start)
        item.stash[_start_key] = len(VERDICTS)
        if refused and report.passed:
            report.outcome = "failed"
            report.longrepr = ("AWS calls template.yaml's roles refuse (tests/aws_calls.py):\n  "
                               + "\n  ".join(dict.fromkeys(refused)))
    return report


def unused_grants() -> dict[str, set[tuple[str, str]]]:
    """For each function some call was checked against: (policy, action) its role grants that no call used."""
    granted: dict[str, set[tuple[str, str]]] = {}
    used: dict[str, set[tuple[str, str]]] = {}
    for verdict in VERDICTS:
        stack = iam.stack_for(verdict.call)
        for logical_id in verdict.checked:
            granted.setdefault(logical_id, set()).update(
                (p, a) for p, a, _ in iam.grants(stack.statements(logical_id)))
    for verdict in VERDICTS:
        for logical_id, policy, action, _ in verdict.used:
            used.setdefault(logical_id, set()).add((policy, action))
    return {f: g - used.get(f, set()) for f, g in granted.items() if g - used.get(f, set())}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RECORDED:
        return
    unattributed = sum(1 for v in VERDICTS if not v.checked)
    functions = sorted({f for v in VERDICTS for f in v.checked})
    tr = terminalreporter
    tr.write_line(f"AWS calls by our code: {len(RECORDED)}, held against the roles of {len(functions)} "
                  f"function(s) in template.yaml; {unattributed} under an environment no function has")
    for logical_id, missing in sorted(unused_grants().items()):
        tr.write_line(f"  {logical_id}: granted, no call used: "
                      + ", ".join(f"{a} ({p})" for p, a in sorted(missing)))
