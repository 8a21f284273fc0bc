"""The packages `make package` deploys (arm64, template.yaml's Runtime), checked file by file.

Built by nexus/package.py exactly as `sam build` runs it (`make build-<LogicalId>`), wheels
downloaded for Lambda's platform; cached like the host build. Nothing here can run on this
machine's CPU, so the checks are static: every native library is aarch64 ELF needing no
glibc newer than Amazon Linux 2023's 2.34, every wheel is tagged for that platform and
Python, every import a function's code can reach is in its package, the sizes fit Lambda's
limits and are the ones docs/deploy.md shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nexus import package
from nexus.lambda_emulator import cached_build
from tests.unit.test_packaging import RUNTIME_PROVIDED, _reachable

pytestmark = pytest.mark.slow

EM_AARCH64 = 183
GLIBC_MAX = (2, 34)  # Amazon Linux 2023, Lambda's python3.12 and later
LIMIT_UNZIPPED = 250 * 1024 * 1024


@pytest.fixture(scope="module")
def arm64_packages() -> Path:
    return cached_build("arm64", False, lambda dest: package.build_all(dest, host=False))


def native_libraries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".so" or ".so." in p.name)]


def test_native_code_is_aarch64_and_needs_no_newer_glibc(arm64_packages):
    seen = 0
    for lib in native_libraries(arm64_packages):
        data = lib.read_bytes()
        assert data[:4] == b"\x7fELF" and data[4] == 2, f"{lib} is not a 64-bit ELF"
        machine = int.from_bytes(data[18:20], "little")
        assert machine == EM_AARCH64, f"{lib} is for ELF machine {machine}, not aarch64"
        needed = {tuple(map(int, m)) for m in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)}
        assert not needed or max(needed) <= GLIBC_MAX, f"{lib} needs glibc {max(needed)}"
        seen += 1
    assert seen, "no native library at all: the build did not fetch the binary wheels"


def test_every_wheel_is_tagged_for_lambdas_platform_and_python(arm64_packages):
    cp = "cp" + package.PYTHON_VERSION.replace(".", "")
    for wheel in arm64_packages.rglob("*.dist-info/WHEEL"):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
        for tag in tags:
            python, abi, platform = tag.split("-")
            if platform == "any":
                continue
            assert "aarch64" in platform, f"{wheel.parent.name}: {tag}"
            assert cp in python.split(".") or abi == "abi3", f"{wheel.parent.name}: {tag} is not for {cp}"


@pytest.mark.parametrize("logical_id", sorted(package.FUNCTIONS))
def test_every_import_a_function_can_reach_is_in_its_deployed_package(arm64_packages, logical_id):
    roots = [arm64_packages / logical_id, arm64_packages / package.LAYER / "python"]
    ours, third = _reachable(logical_id)
    optional = set(package.closure(["supabase"]))  # WITH_SUPABASE_RPC=1 only
    from importlib import metadata

    owners = metadata.packages_distributions()
    for module in ours:
        path = module.replace(".", "/")
        assert any((r / f"{path}.py").exists() or (r / path / "__init__.py").exists() for r in roots), module
    for name in third:
        top = name.partition(".")[0]
        if top in RUNTIME_PROVIDED or set(owners.get(top, [])) & optional:
            continue
        assert any((r / top).is_dir() or list(r.glob(f"{top}.*")) for r in roots), \
            f"{logical_id}: {name} ({third[name]}) is not in the package"


def test_sizes_fit_lambda_and_docs_show_them(arm64_packages):
    _, layer, _ = package.measure(arm64_packages / package.LAYER)
    for logical_id in package.FUNCTIONS:
        _, size, _ = package.measure(arm64_packages / logical_id)
        assert size + layer < LIMIT_UNZIPPED, logical_id
    doc = package.DEPLOY_DOC.read_text()
    block = doc[doc.index(package.SIZES_BEGIN):doc.index(package.SIZES_END)]
    # `make package` rewrites it; a stale table fails here until it is rerun.
    assert package.sizes(arm64_packages) in block, "docs/deploy.md's size table is stale: run `make package`"
