"""Run every bench/bench_*.py and print their markdown, one after another.

Each module exposes `main() -> str` (markdown, starting with a `## name`
heading). Each runs in a fresh interpreter so that one benchmark's imports,
environment and database cannot colour the next one's figures.

    .venv/bin/python -m bench.run            # all
    .venv/bin/python -m bench.run webhook    # only modules whose name contains "webhook"
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_CALL = "import sys, importlib; out = importlib.import_module(sys.argv[1]).main(); print(out if isinstance(out, str) else '')"


def modules(filters: list[str]) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [f"bench.{n}" for n in names if not filters or any(f in n for f in filters)]


def main(argv: list[str]) -> int:
    failed = []
    for module in modules(argv):
        print(f"<!-- {module} -->", flush=True)
        done = subprocess.run([sys.executable, "-c", _CALL, module], cwd=HERE.parent)
        if done.returncode != 0:
            failed.append(module)
            print(f"**{module} failed (exit {done.returncode}).**\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
