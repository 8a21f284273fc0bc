"""`make bench`: run every benchmark and write bench/report.md and bench/report.png.

Each benchmark runs in a fresh interpreter (so one's imports, environment and
database cannot colour the next one's figures) and hands back its markdown
section and its figures as JSON; the chart is drawn from those figures, so the
report and the chart always come from the same run.

    .venv/bin/python -m bench.run            # all, writes the report and the chart
    .venv/bin/python -m bench.run scale      # only modules whose name contains "scale"; prints, writes nothing
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("cold", "warm", "webhook", "fanout", "claims", "scale", "livekit", "admin", "brig")
_CALL = ("import json, sys, importlib; out = importlib.import_module(sys.argv[1]).run(); "
         "open(sys.argv[2], 'w').write(json.dumps(out))")


def modules(filters: list[str]) -> list[str]:
    return [f"bench.bench_{n}" for n in ORDER if not filters or any(f in n for f in filters)]


def run_one(module: str) -> dict | None:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    try:
        started = time.monotonic()
        # stdout is where Lambda code writes its metric lines; the benchmark's own output is the JSON file.
        done = subprocess.run([sys.executable, "-c", _CALL, module, str(out)], cwd=HERE.parent,
                              stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            return None
        result = json.loads(out.read_text())
        result["seconds"] = time.monotonic() - started
        return result
    finally:
        out.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    from bench.common import machine

    names = modules(argv)
    header = machine()
    started = time.monotonic()
    results: dict[str, dict] = {}
    failed = []
    for module in names:
        print(f"running {module} ...", file=sys.stderr, flush=True)
        result = run_one(module)
        if result is None:
            failed.append(module)
            print(f"**{module} failed.**", file=sys.stderr, flush=True)
            continue
        results[module.rsplit("_", 1)[-1]] = result
        print(f"  {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    total = time.monotonic() - started
    sections = "\n".join(r["markdown"] for r in results.values())
    if argv:
        print(sections)
        return 1 if failed else 0

    from bench.chart import draw, headline

    draw({k: r["data"] for k, r in results.items()}, HERE / "report.png")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = "\n".join([
        "# Benchmark report",
        "",
        f"Written by `make bench` ({now}; {header}; {total / 60:.1f} min). Every figure is a ratio of two "
        "measurements made in this run, side by side; absolute times depend on the machine and on what else "
        "it was doing. How each is measured: bench/README.md and each module's docstring.",
        "",
        "![Benchmark chart](report.png)",
        "",
        headline({k: r["data"] for k, r in results.items()}),
        sections,
        *([f"**Failed: {', '.join(failed)}.**", ""] if failed else []),
    ])
    (HERE / "report.md").write_text(report)
    print(f"wrote bench/report.md and bench/report.png in {total / 60:.1f} min", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
