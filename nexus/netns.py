"""Run a command inside a new network namespace that has only loopback.

WebRTC offers every address of the machine as an ICE candidate. Real-client tests and
benchmarks therefore run the LiveKit server, the functions, PostgreSQL and the clients in a
namespace made with `unshare --net` whose only interface is `lo` (brought up with `ip`), so
nothing is ever addressed to anything but 127.0.0.1. Root uses `unshare --net`; anyone else
`unshare --map-root-user --net` (needs unprivileged user namespaces).

    python -m nexus.netns -- CMD ARGS...    # run CMD in such a namespace
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

MARK = "NEXUS_IN_NETNS"


def in_loopback_netns() -> bool:
    """True inside a namespace whose only network interface is loopback.

    Asks the kernel for this process's namespace (if_nameindex); /sys/class/net would show the
    host's interfaces, since `unshare --net` does not remount /sys."""
    import socket

    try:
        return {name for _, name in socket.if_nameindex()} == {"lo"}
    except OSError:
        return False


def unavailable_reason() -> str | None:
    """Why no namespace can be made here, or None."""
    if sys.platform != "linux":
        return f"network namespaces need Linux (this is {sys.platform})"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (util-linux / iproute2)"
    probe = subprocess.run([*unshare_prefix(), "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`{' '.join(unshare_prefix())}` failed: {probe.stderr.strip()[:200]}"
    return None


def unshare_prefix() -> list[str]:
    prefix = ["unshare", "--net"]
    if os.geteuid() != 0:
        prefix.insert(1, "--map-root-user")
    return prefix


def command(argv: list[str]) -> list[str]:
    """`argv` wrapped so it runs in a fresh loopback-only namespace."""
    return [*unshare_prefix(), "--", "sh", "-c", 'ip link set lo up && exec "$@"', "netns", *argv]


def run(argv: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = {**(env if env is not None else os.environ), MARK: "1"}
    return subprocess.run(command(argv), env=env, **kwargs)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    reason = unavailable_reason()
    if reason:
        print(f"netns: {reason}", file=sys.stderr)
        return 2
    return run(argv, cwd=Path.cwd()).returncode


if __name__ == "__main__":
    raise SystemExit(main())
