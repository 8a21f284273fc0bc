"""Lambda packages for `sam build`: each function gets only what it imports.

template.yaml builds every function and the shared layer with
`BuildMethod: makefile`; `sam build` runs `make build-<LogicalId>`, which runs

    python -m nexus.package build <LogicalId> $ARTIFACTS_DIR

- SharedLibraryLayer: `shared/` plus the two libraries every function imports
  (pydantic for settings, psycopg for the database), once for all functions.
- each function: its own modules under `functions/` and the third-party
  packages only it imports (PyJWT and mangum for HTTP functions, livekit-api
  for the RoomService jobs, pywebpush for the senders), minus what the layer
  already holds.

Wheels are fetched for Lambda's platform (template.yaml's Runtime, arm64)
whatever this machine runs, at the exact versions installed here, i.e. the
ones the test suite ran against; dependencies are resolved from this
environment's own metadata and installed with --no-deps, so nothing unpinned
slips in. `--host` builds the same packages for this machine's architecture
and Python (which must be the Runtime's minor): what tests/lambda_runtime/
runs under AWS's Runtime Interface Emulator.

Every package ships bytecode: all of it is compiled by an interpreter of
the Runtime's minor version (a .pyc of another minor is silently ignored) as
unchecked-hash pycs, which Python uses without looking at the source's
mtime, so a read-only /var/task never compiles on a cold start.
`python -m nexus.package sizes` prints the built packages' sizes and
`--write-docs` puts that table in docs/deploy.md.

WITH_SUPABASE_RPC=1 adds the `supabase` client to the layer, for deployments
that reach the database through PostgREST with the service role key only
(no DATABASE_URL); shared/db.py imports it only then.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / ".aws-sam" / "build"
LAYER = "SharedLibraryLayer"

TEMPLATE = ROOT / "template.yaml"


def runtime_version(template: Path = TEMPLATE) -> str:
    """The Python minor Lambda runs: Globals.Function.Runtime in template.yaml (python3.12 -> "3.12")."""
    found = re.search(r"^\s+Runtime:\s*python(\d+\.\d+)\s*$", template.read_text(), re.MULTILINE)
    if not found:
        raise SystemExit(f"no `Runtime: python3.N` in {template}")
    return found.group(1)


PYTHON_VERSION = runtime_version()
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34).
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
# What pip evaluates requirement markers against on Lambda.
TARGET_MARKERS = {
    "python_version": PYTHON_VERSION, "python_full_version": f"{PYTHON_VERSION}.0",
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix",
}

LAYER_REQUIREMENTS = ("pydantic", "psycopg[binary]")
# Installed by a dependency but never imported at run time: type stubs (types-protobuf, from
# livekit-protocol, is google-stubs/ and more), and test helpers inside wheels.
NEVER_SHIPPED = {"types-protobuf"}
PRUNED = ("multidict/_multidict_testcapi*", "multidict/_testcapi*", "google-stubs", "*-stubs")
HTTP = ("pyjwt[crypto]", "mangum")


@dataclass(frozen=True)
class Package:
    handler: str                       # as in template.yaml
    modules: tuple[str, ...]           # files under functions/ besides __init__.py files
    requirements: tuple[str, ...] = ()
    data: tuple[str, ...] = field(default=())  # extra folders shipped as they are
    contract_fingerprint: bool = False  # ship supabase/contract-fingerprint.json (a replay's)


FUNCTIONS: dict[str, Package] = {
    "LiveKitTokenFunction": Package("functions.livekit_token.app.handler",
                                    ("functions/livekit_token/app.py",), HTTP),
    # HS256 only: PyJWT without its cryptography extra.
    "LiveKitWebhookFunction": Package("functions.livekit_webhook.app.handler",
                                      ("functions/livekit_webhook/app.py",), ("pyjwt", "mangum")),
    "LiveKitWebhookWorkerFunction": Package("functions.livekit_webhook.worker.handler",
                                            ("functions/livekit_webhook/worker.py",)),
    "PresenceReconcilerFunction": Package("functions.livekit_webhook.reconciler.handler",
                                          ("functions/livekit_webhook/reconciler.py",), ("livekit-api",)),
    "NetBridgeFunction": Package("functions.net_bridge.app.handler", ("functions/net_bridge/app.py",), HTTP),
    "AcademyRequestFunction": Package("functions.academy.request.handler", ("functions/academy/request.py",), HTTP),
    "AcademyAcceptFunction": Package("functions.academy.accept.handler", ("functions/academy/accept.py",), HTTP),
    "SimPodExpiryFunction": Package("functions.academy.expiry.handler", ("functions/academy/expiry.py",),
                                    ("livekit-api",)),
    "NotificationsSubscribeFunction": Package("functions.notifications.subscribe.handler",
                                              ("functions/notifications/subscribe.py",), HTTP),
    "RescueRequestFunction": Package("functions.notifications.rescue.handler",
                                     ("functions/notifications/rescue.py", "functions/notifications/delivery.py"),
                                     (*HTTP, "pywebpush")),
    "PushFanoutFunction": Package("functions.notifications.fanout.handler",
                                  ("functions/notifications/fanout.py", "functions/notifications/delivery.py"),
                                  ("pywebpush",)),
    # Both reach LiveKit through the standard library (Twirp JSON), never livekit-api.
    "MemberAdminFunction": Package("functions.member_admin.app.handler", ("functions/member_admin/app.py",), HTTP),
    "LiveKitAccessSyncFunction": Package("functions.member_admin.sync.handler", ("functions/member_admin/sync.py",),
                                         ("pyjwt",)),
    # health compares the shipped migrations with the database's history, and
    # their fingerprint (computed here, from a replay) with the database's objects.
    "HealthFunction": Package("functions.health.app.handler", ("functions/health/app.py",), HTTP,
                              data=("supabase/migrations",), contract_fingerprint=True),
}


def layer_requirements() -> tuple[str, ...]:
    extra = ("supabase",) if os.environ.get("WITH_SUPABASE_RPC", "") not in ("", "0") else ()
    return (*LAYER_REQUIREMENTS, *extra)


# -- dependency closure from this environment's metadata --------------------------------------

def closure(requirements: tuple[str, ...] | list[str]) -> dict[str, str]:
    """canonical name -> installed version, for the requirements and everything they need on Lambda."""
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [Requirement(r) for r in requirements]
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{req.name} is not installed in {sys.prefix}; run `make install` first") from None
        if name in NEVER_SHIPPED:
            continue
        pinned[name] = dist.version
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker is None or any(_marker_holds(sub.marker, extra) for extra in ("", *req.extras)):
                stack.append(sub)
    return pinned


def _marker_holds(marker: Marker, extra: str) -> bool:
    return marker.evaluate({**TARGET_MARKERS, "extra": extra})


def function_requirements(logical_id: str) -> dict[str, str]:
    """What the function's own package holds: its closure minus the layer's."""
    layer = closure(layer_requirements())
    own = closure(FUNCTIONS[logical_id].requirements)
    return {name: version for name, version in own.items() if name not in layer}


# -- building ---------------------------------------------------------------------------------

def _is_pure(name: str) -> bool:
    """A py3-none-any package is the same on every platform (and may come as an sdist, e.g. http-ece)."""
    tags = [line.split(":", 1)[1].strip() for line in (metadata.distribution(name).read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    return bool(tags) and all(tag.endswith("-none-any") for tag in tags)


def pip_install(pins: dict[str, str], target: Path, host: bool = False) -> None:
    """Install the pins into `target`: for Lambda's platform, or (`host`) for this machine's."""
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--no-compile", "--target", str(target)]
    pure = sorted(f"{n}=={v}" for n, v in pins.items() if _is_pure(n))
    binary = sorted(f"{n}=={v}" for n, v in pins.items() if not _is_pure(n))
    if host:  # this interpreter's own platform: one pip run for all
        _check_host()
        commands = [[*base, *binary, *pure] if pins else None]
    else:
        lambda_platform = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:",
                           *[f"--platform={p}" for p in PLATFORMS]]
        commands = [[*base, *lambda_platform, *binary] if binary else None, [*base, *pure] if pure else None]
    for cmd in commands:
        if cmd:
            subprocess.run(cmd, check=True)
            shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: nothing runs them on Lambda
    for pattern in PRUNED:
        for path in target.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _check_host() -> None:
    if sys.version_info[:2] != _minor(PYTHON_VERSION):
        raise SystemExit(f"--host builds for this interpreter, Python {sys.version_info[0]}.{sys.version_info[1]}, "
                         f"but template.yaml deploys python{PYTHON_VERSION}: run it with that version")


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


# -- bytecode ---------------------------------------------------------------------------------

def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def runtime_interpreter() -> str:
    """An interpreter of the Runtime's minor version: this one, else python3.N on PATH or in pyenv's versions."""
    if sys.version_info[:2] == _minor(PYTHON_VERSION):
        return sys.executable
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [shutil.which(f"python{PYTHON_VERSION}"),
                  *sorted(glob.glob(f"{pyenv}/versions/{PYTHON_VERSION}.*/bin/python{PYTHON_VERSION}"), reverse=True)]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == PYTHON_VERSION:
            return candidate
    raise SystemExit(f"no python{PYTHON_VERSION} (template.yaml's Runtime) to compile the packages' bytecode with: "
                     "bytecode of another version would be ignored on Lambda")


def compile_bytecode(folder: Path, deployed_at: str) -> None:
    """Compile every module under `folder` for the Runtime, as unchecked-hash pycs.

    `deployed_at` (/var/task, /opt/python) is the path tracebacks will show.
    """
    subprocess.run([runtime_interpreter(), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                    "unchecked-hash", "-s", str(folder), "-p", deployed_at, str(folder)], check=True)


def build_layer(artifacts: Path, host: bool = False) -> None:
    # A Python layer's `python/` folder is on sys.path (/opt/python).
    site = artifacts / "python"
    site.mkdir(parents=True, exist_ok=True)
    _copy_tree(ROOT / "shared", site / "shared")
    pip_install(closure(layer_requirements()), site, host)
    compile_bytecode(site, "/opt/python")


def build_function(logical_id: str, artifacts: Path, host: bool = False) -> None:
    package = FUNCTIONS[logical_id]
    artifacts.mkdir(parents=True, exist_ok=True)
    for module in package.modules:
        src = ROOT / module
        for parent in reversed(src.relative_to(ROOT).parents[:-1]):
            init = ROOT / parent / "__init__.py"
            (artifacts / parent).mkdir(parents=True, exist_ok=True)
            shutil.copy2(init, artifacts / parent / "__init__.py")
        shutil.copy2(src, artifacts / module)
    for folder in package.data:
        _copy_tree(ROOT / folder, artifacts / folder)
    if package.contract_fingerprint:
        from nexus.dbtools import fingerprint

        fingerprint.write(fingerprint.from_replay(), artifacts / "supabase" / fingerprint.FILE_NAME)
    pip_install(function_requirements(logical_id), artifacts, host)
    compile_bytecode(artifacts, "/var/task")


def build(logical_id: str, artifacts: Path, host: bool = False) -> None:
    if artifacts.name == logical_id and artifacts.is_dir():
        shutil.rmtree(artifacts)  # a rebuild starts clean: pip --target does not replace what is there
    if logical_id == LAYER:
        build_layer(artifacts, host)
    elif logical_id in FUNCTIONS:
        build_function(logical_id, artifacts, host)
    else:
        raise SystemExit(f"no package is defined for {logical_id}; see nexus/package.py")


def build_all(dest: Path, host: bool = False, workers: int = 2) -> Path:
    """The layer and every function into dest/<LogicalId>, as `sam build` lays them out."""
    from concurrent.futures import ThreadPoolExecutor

    dest.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in [pool.submit(build, logical_id, dest / logical_id, host) for logical_id in (LAYER, *FUNCTIONS)]:
            done.result()
    return dest


def inputs_digest(host: bool = False) -> str:
    """A digest of everything a build reads: this code, the pins, shared/, functions/, the migrations."""
    import hashlib

    h = hashlib.sha256(f"{PYTHON_VERSION} host={host} {sorted(layer_requirements())}".encode())
    pins = {LAYER: closure(layer_requirements()), **{f: function_requirements(f) for f in FUNCTIONS}}
    h.update(repr(sorted((k, sorted(v.items())) for k, v in pins.items())).encode())
    for folder in ("nexus/package.py", "nexus/dbtools", "shared", "functions", "supabase/migrations"):
        for path in sorted((ROOT / folder).rglob("*") if (ROOT / folder).is_dir() else [ROOT / folder]):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:20]


# -- sizes ------------------------------------------------------------------------------------

def measure(folder: Path) -> tuple[int, int, int]:
    """(files, bytes unzipped, bytes zipped as Lambda receives it)."""
    files, size = 0, 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files += 1
                size += path.stat().st_size
                zf.write(path, path.relative_to(folder))
    return files, size, buffer.tell()


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f}"


SIZES_HEADER = ("| package | third-party packages | files | .pyc | unzipped MB | zipped MB |",
                "|---|---|---:|---:|---:|---:|")
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SIZES_BEGIN = "<!-- sizes: generated by `make package` (python -m nexus.package sizes --write-docs); do not edit -->"
SIZES_END = "<!-- /sizes -->"


def sizes(build_dir: Path = BUILD_DIR) -> str:
    rows = list(SIZES_HEADER)
    for logical_id in (LAYER, *FUNCTIONS):
        folder = build_dir / logical_id
        if not folder.is_dir():
            raise SystemExit(f"{folder} does not exist: run `make package` first")
        files, size, zipped = measure(folder)
        pycs = sum(1 for _ in folder.rglob("*.pyc"))
        reqs = layer_requirements() if logical_id == LAYER else FUNCTIONS[logical_id].requirements
        rows.append(f"| {logical_id} | {', '.join(reqs) or '(layer only)'} | {files} | {pycs} | {_mb(size)} "
                    f"| {_mb(zipped)} |")
    return "\n".join(rows)


def write_sizes(table: str, doc: Path = DEPLOY_DOC) -> None:
    """Replace the generated block of docs/deploy.md with `table`."""
    text = doc.read_text()
    begin, end = text.find(SIZES_BEGIN), text.find(SIZES_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{doc} has no generated sizes block ({SIZES_BEGIN} ... {SIZES_END})")
    doc.write_text(text[:begin] + f"{SIZES_BEGIN}\nMeasured by `make package` (python{PYTHON_VERSION}, arm64).\n\n"
                   + table + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexus.package", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build one package (what `make build-<LogicalId>` runs)")
    p_build.add_argument("logical_id")
    p_build.add_argument("artifacts", type=Path)
    p_build.add_argument("--host", action="store_true",
                         help="for this machine's architecture and Python (the emulator rehearsal), not arm64")
    p_sizes = sub.add_parser("sizes", help="sizes of the packages `sam build` produced")
    p_sizes.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    p_sizes.add_argument("--write-docs", action="store_true", help="also put the table in docs/deploy.md")
    sub.add_parser("requirements", help="the pinned packages each function ships")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.logical_id, args.artifacts.resolve(), args.host)
    elif args.command == "sizes":
        table = sizes(args.build_dir)
        print(table)
        if args.write_docs:
            write_sizes(table)
    else:
        print(f"{LAYER}: " + " ".join(f"{n}=={v}" for n, v in sorted(closure(layer_requirements()).items())))
        for logical_id in FUNCTIONS:
            pins = function_requirements(logical_id)
            print(f"{logical_id}: " + (" ".join(f"{n}=={v}" for n, v in sorted(pins.items())) or "(layer only)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
