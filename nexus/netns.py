"""Run a command inside a new network namespace that has only loopback.

WebRTC offers every address of the machine as an ICE candidate. Real-client tests and
benchmarks therefore run the LiveKit server, the functions, PostgreSQL and the clients in a
namespace made with `unshare --net` that has only loopback addresses: `lo` (127.0.0.1) and,
because libwebrtc never gathers candidates on an interface of the loopback type, a veth pair
whose first end carries 127.0.0.2/32 (its peer has no address and the pair leads nowhere out
of the namespace). Every packet is addressed to 127.0.0.1 or 127.0.0.2 (docs/decisions.md).
Root uses `unshare --net`; anyone else `unshare --map-root-user --net` (needs unprivileged
user namespaces).

    python -m nexus.netns -- CMD ARGS...    # run CMD in such a namespace
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

MARK = "NEXUS_IN_NETNS"
# The veth pair: libwebrtc (the `livekit` client) takes its own ICE candidate from lkv0.
CLIENT_ADDRESS = "127.0.0.2"
INTERFACES = {"lo", "lkv0", "lkv1"}
SETUP = ("ip link set lo up"
         " && ip link add lkv0 type veth peer name lkv1"
         # no IPv6 link-local addresses on the pair either
         " && { for i in lkv0 lkv1; do echo 1 > /proc/sys/net/ipv6/conf/$i/disable_ipv6; done 2>/dev/null || true; }"
         f" && ip addr add {CLIENT_ADDRESS}/32 dev lkv0 && ip link set lkv0 up && ip link set lkv1 up")


def in_loopback_netns() -> bool:
    """True inside a namespace made by `command` (only lo and the loopback-addressed veth pair).

    Asks the kernel for this process's namespace (if_nameindex); /sys/class/net would show the
    host's interfaces, since `unshare --net` does not remount /sys."""
    import socket

    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return False
    if not ("lo" in names and names <= INTERFACES):
        return False
    try:  # and every IPv4 address in it is a loopback one
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return all(line.split()[3].startswith("127.") for line in out.splitlines() if len(line.split()) > 3)


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
    return [*unshare_prefix(), "--", "sh", "-c", SETUP + ' && exec "$@"', "netns", *argv]


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
