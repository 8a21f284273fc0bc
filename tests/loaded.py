"""`make test-loaded`: the fault and deadline suites, twice, with the machine's other cores kept busy.

A test that passes only on a quiet machine is a defect (docs/decisions.md, "no clocks in tests"):
this runs the suites most exposed to timing (crashes and restarts, retries, leases, budgets, slow
peers) while CPU burners (one per core but one, started and stopped here) compete for the CPU.
Each pass runs the suites in a fresh pytest; the first failing pass fails the target.

    .venv/bin/python -m tests.loaded                # the suites below, twice
    .venv/bin/python -m tests.loaded tests/faults   # other paths instead
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSES = 2
SUITES = (
    "tests/faults",                                                    # PostgreSQL crashes under load
    "tests/integration/livekit_webhook/test_reconciler_deadline.py",   # the reconciler's Lambda deadline
    "tests/integration/livekit_webhook/test_rooms_client.py",          # RoomService timeouts
    "tests/integration/notifications/test_notifications_slow_services.py",  # the flare budget, slow pushes
    "tests/integration/notifications/test_notifications_fanout.py",    # leases, Retry-After
    "tests/integration/test_db_connection_faults.py",                  # dead connections, pings
    "tests/unit/test_push.py",                                         # send deadlines
    "tests/unit/test_secrets.py",                                      # a stalling secret store
)
# Busy until stopped, or until the parent that started it is gone (so no burner outlives a killed run).
_BURN = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(10000))\n"


def burners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", _BURN]) for _ in range(count)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv: list[str]) -> int:
    suites = argv or list(SUITES)
    count = max(1, (os.cpu_count() or 2) - 1)
    procs = burners(count)
    print(f"test-loaded: {count} CPU burner(s) running (pids {', '.join(str(p.pid) for p in procs)})", flush=True)
    started = time.monotonic()
    try:
        for n in range(1, PASSES + 1):
            print(f"test-loaded: pass {n} of {PASSES}", flush=True)
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites], cwd=ROOT)
            if done.returncode != 0:
                print(f"test-loaded: pass {n} FAILED (exit {done.returncode})", flush=True)
                return done.returncode
    finally:
        stop(procs)
    print(f"test-loaded: {PASSES} passes green under load in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
