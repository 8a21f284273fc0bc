"""Cold start of every HTTP function: importing its module against the floor of what it needs.

A Lambda cold start pays the interpreter, then the handler module's imports and
init-time work. Each function is timed as a fresh `python -c "import <module>"`
in a Lambda-like environment (so init-time checks run), against the floor
`python -c "import jwt, psycopg, pydantic, mangum"`: the libraries every HTTP
function cannot do without. handle-rescue-request also sends pushes, so its
floor adds pywebpush. Runs are interleaved (order alternating) and each ratio
is the median of side-by-side pairs.

    .venv/bin/python -m bench.bench_cold
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import FLOOR_IMPORTS, ROOT, lambda_env, machine
from nexus.registry import HTTP_FUNCTIONS

RUNS = int(__import__("os").environ.get("NEXUS_BENCH_COLD_RUNS", "15"))
TARGET = 1.25
HEAVY = ("aiohttp", "livekit.api", "livekit.protocol", "google.protobuf", "supabase", "boto3", "pywebpush")
# What each function truly needs beyond the common floor (it calls them).
EXTRA_FLOOR = {"handle-rescue-request": "pywebpush"}


def _module(name: str) -> str:
    return HTTP_FUNCTIONS[name].partition(":")[0]


def _time(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
    return (time.perf_counter() - started) * 1000


def heavy_imports(module: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return sorted({h for h in HEAVY for m in loaded if m == h or m.startswith(h + ".")})


def run() -> dict[str, Any]:
    env = lambda_env("postgresql://bench@127.0.0.1:1/none")  # imports only: nothing connects
    programs = {"bare": "pass", "floor": FLOOR_IMPORTS}
    for extra in set(EXTRA_FLOOR.values()):
        programs[f"floor+{extra}"] = f"{FLOOR_IMPORTS}, {extra}"
    for name in HTTP_FUNCTIONS:
        programs[name] = f"import {_module(name)}"
    for code in programs.values():  # warm the page cache and .pyc files
        _time(code, env)
    samples: dict[str, list[float]] = {p: [] for p in programs}
    order = list(programs.items())
    for i in range(RUNS):
        for name, code in (order if i % 2 == 0 else order[::-1]):
            samples[name].append(_time(code, env))

    rows = []
    for name in HTTP_FUNCTIONS:
        floor_name = f"floor+{EXTRA_FLOOR[name]}" if name in EXTRA_FLOOR else "floor"
        ratio = statistics.median(a / f for a, f in zip(samples[name], samples[floor_name]))
        expected = {EXTRA_FLOOR[name]} if name in EXTRA_FLOOR else set()
        unexpected = [m for m in heavy_imports(_module(name), env) if m not in expected and not
                      (name in EXTRA_FLOOR and m == "aiohttp")]  # pywebpush imports aiohttp itself
        rows.append({"function": name, "ms": statistics.median(samples[name]),
                     "floor": floor_name, "floor_ms": statistics.median(samples[floor_name]),
                     "ratio": ratio, "heavy": unexpected})
    data = {"rows": rows, "bare_ms": statistics.median(samples["bare"])}
    return {"markdown": report(data), "data": data}


def report(data: dict[str, Any]) -> str:
    lines = [
        "## Cold start: import of each HTTP function against its floor",
        "",
        f"{RUNS} interleaved fresh interpreters per program, Lambda-like environment; ratio = median of "
        f"side-by-side pairs. Floor: `{FLOOR_IMPORTS}` (handle-rescue-request: plus `pywebpush`, which it calls). "
        f"Bare interpreter: {data['bare_ms']:.0f} ms.",
        "",
        "| function | import (ms) | floor (ms) | ratio | target | heavy SDKs it does not call |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in data["rows"]:
        verdict = "meets" if r["ratio"] <= TARGET else "MISSES"
        lines.append(f"| {r['function']} | {r['ms']:.0f} | {r['floor_ms']:.0f} | {r['ratio']:.2f}x | "
                     f"<= {TARGET}x ({verdict}) | {', '.join(r['heavy']) or 'none'} |")
    return "\n".join(lines) + "\n"


def main() -> str:
    return run()["markdown"]


if __name__ == "__main__":
    print(machine())
    print(main())
