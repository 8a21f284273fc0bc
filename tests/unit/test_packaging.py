"""Each Lambda package holds only what its function imports (nexus/package.py).

For every function, a fresh interpreter imports its handler (and what it
imports lazily when it runs: psycopg on the first query, livekit.api for
RoomService) with every installed distribution outside that function's
package blocked, as on Lambda. It must import, and every package it ships
must be used. No network: the real build (`make package`) downloads the
arm64 wheels of these same pins.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from nexus import package

ROOT = Path(__file__).resolve().parents[2]
# What a function imports only when it runs, not when Lambda loads it.
LAZY = {logical_id: ["psycopg"] for logical_id in package.FUNCTIONS}
LAZY["PresenceReconcilerFunction"].append("livekit.api")
LAZY["SimPodExpiryFunction"].append("livekit.api")
# RoomService over Twirp JSON: urllib and a PyJWT service token, signed when a job runs.
LAZY["LiveKitAccessSyncFunction"].append("jwt")

PROBE = r"""
import importlib, importlib.metadata as md, json, sys
from packaging.utils import canonicalize_name

allowed = set(json.loads(sys.argv[1])) | {"nomadnexus-functions"}
owners = {top: {canonicalize_name(d) for d in dists} for top, dists in md.packages_distributions().items()}

class OnlyThePackage:
    # Lambda has the standard library, the layer and the function's own folder; nothing else.
    def find_spec(self, name, path=None, target=None):
        dists = owners.get(name.partition(".")[0])
        if dists and not dists & allowed:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this function's package)", name=name)
        return None

sys.meta_path.insert(0, OnlyThePackage())
before = set(sys.modules)
handler_module = sys.argv[2].rpartition(".")[0]
importlib.import_module(handler_module)
for lazy in sys.argv[3:]:
    importlib.import_module(lazy)
used = sorted({d for m in set(sys.modules) - before for d in owners.get(m.partition(".")[0], ())})
ours = sorted(m for m in sys.modules if m.startswith("functions."))
print(json.dumps({"used": used, "functions": ours}))
"""


def _probe(logical_id: str) -> dict:
    shipped = {**package.closure(package.layer_requirements()), **package.function_requirements(logical_id)}
    handler = package.FUNCTIONS[logical_id].handler
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(shipped)), handler, *LAZY[logical_id]],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"{logical_id} does not import with only its package:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("logical_id", sorted(package.FUNCTIONS))
def test_function_imports_with_only_its_package_and_uses_all_of_it(logical_id):
    found = _probe(logical_id)
    used = set(found["used"])
    # Every direct requirement (and the extras asked for) is really imported.
    for spec in (*package.layer_requirements(), *package.FUNCTIONS[logical_id].requirements):
        req = Requirement(spec)
        assert canonicalize_name(req.name) in used, f"{logical_id} ships {spec} but never imports it"
        if "crypto" in req.extras:
            assert "cryptography" in used, f"{logical_id} ships {spec} without using the extra"
    # Its own modules are all in the package.
    shipped = {m.removesuffix(".py").replace("/", ".") for m in package.FUNCTIONS[logical_id].modules}
    packages = {m.rpartition(".")[0] for m in shipped}
    assert set(found["functions"]) <= shipped | packages, found["functions"]


def test_heavy_sdks_stay_out_of_the_packages_that_do_not_call_them():
    heavy = {"aiohttp": "livekit-api or pywebpush", "boto3": "nobody", "supabase": "the RPC transport only"}
    calls = {"aiohttp": {"PresenceReconcilerFunction", "SimPodExpiryFunction", "RescueRequestFunction",
                         "PushFanoutFunction"}}
    for logical_id in package.FUNCTIONS:
        ships = set(package.function_requirements(logical_id)) | set(package.closure(package.layer_requirements()))
        for sdk, why in heavy.items():
            if logical_id not in calls.get(sdk, set()):
                assert sdk not in ships, f"{logical_id} ships {sdk} ({why})"


def test_layer_and_functions_do_not_ship_a_package_twice():
    layer = set(package.closure(package.layer_requirements()))
    for logical_id in package.FUNCTIONS:
        assert not layer & set(package.function_requirements(logical_id)), logical_id


# -- every import a function's code can reach, lazy ones included, is in its package ------------------

# On Lambda's Python runtime, not in any package: boto3 (shared/secrets.py, only with a secret reference).
RUNTIME_PROVIDED = {"boto3", "botocore"}
# In the layer only when built with WITH_SUPABASE_RPC=1 (shared/db.py imports the supabase client,
# httpx and postgrest only then).
OPTIONAL = set(package.closure(["supabase"]))


def _imports(path: Path) -> set[str]:
    """Every module an `import` anywhere in the file names (inside functions too)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _reachable(logical_id: str) -> tuple[set[str], dict[str, str]]:
    """(our modules, third-party module -> the first of ours that imports it) reachable from the handler."""
    todo = [m.removesuffix(".py").replace("/", ".") for m in package.FUNCTIONS[logical_id].modules]
    ours: set[str] = set()
    third: dict[str, str] = {}
    while todo:
        module = todo.pop()
        if module in ours:
            continue
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        if not path.exists():
            continue  # `from shared import x` names x, a module or an attribute
        ours.add(module)
        for name in _imports(path):
            top = name.partition(".")[0]
            if top in ("shared", "functions"):
                todo.append(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third.setdefault(name, module)
    return ours, third


@pytest.mark.parametrize("logical_id", sorted(package.FUNCTIONS))
def test_every_import_a_function_can_reach_is_shipped_with_it(logical_id):
    from importlib import metadata

    owners = metadata.packages_distributions()
    shipped = {**package.closure(package.layer_requirements()), **package.function_requirements(logical_id)}
    _, third = _reachable(logical_id)
    missing = {}
    for name, importer in sorted(third.items()):
        top = name.partition(".")[0]
        dists = {canonicalize_name(d) for d in owners.get(top, [])}
        if top in RUNTIME_PROVIDED or dists & (set(shipped) | OPTIONAL):
            continue
        missing[name] = importer
    # A module its code can import but its package lacks is an ImportError the day that line runs.
    assert not missing, f"{logical_id} can reach imports its package does not ship: {missing}"


def test_livekit_api_stays_in_the_scheduled_jobs_that_ship_it():
    ships = {f for f in package.FUNCTIONS if "livekit-api" in package.function_requirements(f)}
    assert ships == {"PresenceReconcilerFunction", "SimPodExpiryFunction"}
    for logical_id in package.FUNCTIONS:
        ours, third = _reachable(logical_id)
        reaches = {n for n in third if n.startswith(("livekit.api", "livekit.protocol", "aiohttp"))}
        assert bool(reaches) == (logical_id in ships), (logical_id, reaches)
        assert ("shared.livekit_roomservice" in ours) == (logical_id in ships), logical_id
