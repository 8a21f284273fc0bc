"""Cold start of every function as packaged, under AWS's Runtime Interface Emulator.

Each function's package (built for this machine by nexus/package.py, the code path of
`make package`) runs in the read-only sandbox of tests/lambda_runtime/ (nexus/lambda_emulator.py):
/var/task and /opt read-only, so Python can write no bytecode and uses only what ships. The
figure is a container's first invocation less its second, timed by the caller: the runtime's
start and the handler module's init, what Lambda calls the init phase (the emulator's own
`Init Duration` is not it: it starts the runtime lazily, so the handler's imports land in the
first invocation). Three packages side by side, interleaved with the order alternating:

- packaged: as `make package` builds it, with unchecked-hash pycs for the Runtime;
- no bytecode: the same package with every .pyc removed (what shipped before issue 21): every
  module is compiled on every cold start;
- floor: the same package whose handler only imports the third-party libraries the function
  ships (and pydantic, psycopg from the layer), with bytecode.

Ratios are medians of side-by-side pairs. Needs root and unshare (a mount namespace) and the
emulator (`make lambda-emulator`).

    .venv/bin/python -m bench.bench_emulator
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import lambda_env, machine
from nexus import lambda_emulator, package

RUNS = int(os.environ.get("NEXUS_BENCH_EMULATOR_RUNS", "5"))
VARIANTS = ("packaged", "no bytecode", "floor")
FLOOR_HANDLER = "nexus_floor.handler"


def _floor_module(logical_id: str) -> str:
    """A handler importing the libraries the function ships and the layer's, nothing of ours."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    wanted = {canonicalize_name(r.split("[")[0])
              for r in (*package.FUNCTIONS[logical_id].requirements, *package.LAYER_REQUIREMENTS)}
    tops = sorted({top for top, dists in metadata.packages_distributions().items()
                   if {canonicalize_name(d) for d in dists} & wanted and top.isidentifier()
                   and not top.startswith("_")})
    imports = "\n".join(f"import {'livekit.api' if top == 'livekit' else top}" for top in tops)
    return f"{imports}\n\n\ndef handler(event, context):\n    return {{}}\n"


def _variants(packages: Path, work: Path, logical_id: str) -> dict[str, tuple[Path, Path, str]]:
    """variant -> (task dir, layer dir, handler); copies are hard links, so they cost no space."""
    layer = packages / package.LAYER
    bare_layer = work / "layer-no-bytecode"
    if not bare_layer.exists():
        subprocess.run(["cp", "-al", str(layer), str(bare_layer)], check=True)
        for pyc in bare_layer.rglob("*.pyc"):
            pyc.unlink()
    bare = work / f"{logical_id}-no-bytecode"
    subprocess.run(["cp", "-al", str(packages / logical_id), str(bare)], check=True)
    for pyc in bare.rglob("*.pyc"):
        pyc.unlink()
    floor = work / f"{logical_id}-floor"
    subprocess.run(["cp", "-al", str(packages / logical_id), str(floor)], check=True)
    (floor / "nexus_floor.py").write_text(_floor_module(logical_id))
    package.compile_bytecode(floor, "/var/task")
    handler = package.FUNCTIONS[logical_id].handler
    return {"packaged": (packages / logical_id, layer, handler), "no bytecode": (bare, bare_layer, handler),
            "floor": (floor, layer, FLOOR_HANDLER)}


def _init_ms(packages: Path, task: Path, layer: Path, handler: str, env: dict[str, str], rie: Path) -> float:
    """The first invocation's latency less the second's: the runtime's start and the handler's init."""
    with lambda_emulator.Sandbox(task, layer, packages / "runtime", handler, env, rie=rie) as box:
        started = time.perf_counter()
        box.invoke({})  # any event: the cold start happens before it is handled
        cold = time.perf_counter() - started
        started = time.perf_counter()
        box.invoke({})
        warm = time.perf_counter() - started
    return max(0.0, cold - warm) * 1000


def run() -> dict[str, Any]:
    problem = lambda_emulator.sandbox_problem()
    if problem:
        raise SystemExit(f"bench_emulator: {problem}")
    rie = lambda_emulator.ensure_binary()
    packages = lambda_emulator.host_packages()
    env = {k: v for k, v in lambda_env("postgresql://bench@127.0.0.1:1/none").items()
           if k not in ("PYTHONPATH", "PATH", "HOME") and not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["LOG_LEVEL"] = "WARNING"
    work = Path(tempfile.mkdtemp(prefix="nexus-bench-emulator-"))
    rows = []
    try:
        for logical_id in package.FUNCTIONS:
            variants = _variants(packages, work, logical_id)
            function_env = {**env, "AWS_LAMBDA_FUNCTION_NAME": f"bench-{logical_id}"}
            order = list(VARIANTS)
            samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for i in range(RUNS):
                for variant in (order if i % 2 == 0 else order[::-1]):
                    samples[variant].append(_init_ms(packages, *variants[variant], function_env, rie))
            rows.append({
                "function": logical_id,
                **{f"{v}_ms": statistics.median(samples[v]) for v in VARIANTS},
                "no_bytecode_ratio": statistics.median(b / p for b, p in zip(samples["no bytecode"],
                                                                              samples["packaged"])),
                "floor_ratio": statistics.median(p / f for p, f in zip(samples["packaged"], samples["floor"])),
            })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data = {"rows": rows, "runs": RUNS}
    return {"markdown": report(data), "data": data}


def report(data: dict[str, Any]) -> str:
    lines = [
        "## Cold start under the Lambda Runtime Interface Emulator: as packaged, without bytecode, floor",
        "",
        f"Each package's cold start in the read-only sandbox (nexus/lambda_emulator.py): first invocation "
        "less second, "
        f"{data['runs']} interleaved cold starts per variant; ratios are medians of side-by-side pairs. "
        "*No bytecode*: the same package with its .pyc files removed (compiled on every cold start, as "
        "before issue 21). *Floor*: a handler importing only the third-party libraries the function ships.",
        "",
        "| function | packaged (ms) | no bytecode (ms) | floor (ms) | no bytecode / packaged | packaged / floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        lines.append(f"| {r['function']} | {r['packaged_ms']:.0f} | {r['no bytecode_ms']:.0f} | {r['floor_ms']:.0f} "
                     f"| {r['no_bytecode_ratio']:.2f}x | {r['floor_ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(machine())
    print(run()["markdown"])
