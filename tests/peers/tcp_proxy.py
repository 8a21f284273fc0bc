"""A TCP proxy on 127.0.0.1 in front of PostgreSQL that can lose what the network loses.

`with TcpProxy(upstream_port) as proxy:` forwards every connection to the
upstream port and exposes `proxy.port` (a free one unless `listen_port` is given). Faults, each as a real socket event:

- `drop_response_containing(marker)`: the next server-to-client chunk holding
  `marker` is not delivered and both sides are closed. The server has already
  executed (and, in autocommit, committed) the statement; only its answer is lost.
- `hang_up()`: every open client connection gets a FIN, as when a pooler
  closes idle connections while the Lambda container is frozen.
- `sever_silently()`: every open connection is cut with no FIN; the client
  learns it only when it next sends (a reset), as when a NAT or a failover
  dropped it while the container was frozen.

- `drop_requests_containing(marker)`: every client-to-server chunk holding
  `marker` (until `stop_dropping()`) is not delivered and both sides are
  closed: a sender's request (and each of its retries) never arrives whole,
  as a delivery lost on the way. Used in front of the functions for LiveKit's
  webhooks (tests/livekit_server/).

`sent(marker)` counts client-to-server chunks holding `marker`: how often a
statement actually went out. Threads are daemons and the listener stops on
exit or after `lifetime` seconds.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket):
        self.client, self.server = client, server
        self.severed = False

    def close(self, *, reset: bool = False) -> None:
        for s in (self.client, self.server):
            try:
                if reset:  # RST instead of FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    # Now, not when the pipe thread's select lets go of the socket.
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class TcpProxy:
    def __init__(self, upstream_port: int, *, listen_port: int = 0, lifetime: float = 120.0):
        self.upstream_port = upstream_port
        self.lifetime = lifetime
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._drop_marker: bytes | None = None
        self._drop_requests: bytes | None = None
        self.requests_dropped = 0
        self._sent: list[bytes] = []
        self._stop = threading.Event()
        self._timer: threading.Timer | None = None

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def url_for(self, database_url: str) -> str:
        return database_url.replace(f":{self.upstream_port}/", f":{self.port}/")

    def drop_response_containing(self, marker: bytes) -> None:
        self._drop_marker = marker

    def drop_requests_containing(self, marker: bytes) -> None:
        self._drop_requests = marker

    def stop_dropping(self) -> None:
        self._drop_requests = None

    def hang_up(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for p in pairs:
            p.close()
        time.sleep(0.05)  # let the FIN land before the test's next call

    def sever_silently(self) -> None:
        with self._lock:
            for p in self._pairs:
                p.severed = True

    def sent(self, marker: bytes) -> int:
        with self._lock:
            return sum(marker in chunk for chunk in self._sent)

    def __enter__(self) -> "TcpProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept, which holds the socket
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for p in pairs:
            p.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pipe, args=(pair,), daemon=True).start()

    def _pipe(self, pair: _Pair) -> None:
        socks = [pair.client, pair.server]
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(socks, [], [], 0.5)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if pair.severed:
                        pair.close(reset=True)  # the path is gone: nothing gets through
                        return
                    if s is pair.client:
                        with self._lock:
                            self._sent.append(data)
                        if self._drop_requests is not None and self._drop_requests in data:
                            self.requests_dropped += 1
                            raise OSError("request dropped")
                        pair.server.sendall(data)
                    else:
                        marker = self._drop_marker
                        if marker is not None and marker in data:
                            self._drop_marker = None
                            raise OSError("response dropped")
                        pair.client.sendall(data)
        except (OSError, ValueError):
            pair.close()
