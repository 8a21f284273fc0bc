"""The HTTP side of a Web Push: a pooled session in which every POST has a hard deadline.

requests' timeouts bound each socket operation, not the request: a push
service that trickles a byte every 0.2 s never times out, and pywebpush's
`send()` then reads the whole answer (it logs `resp.text`). Here:

- every POST carries a wall-clock deadline; one watchdog thread per process
  shuts the connection's socket down when it passes, which ends any blocked
  read at once. The connect timeout is clamped to what is left (TCP connect
  and the TLS handshake are each a single deadline-bounded call in CPython).
  Only DNS resolution cannot be interrupted, so the fan-out does not wait for
  a send past its deadline either (functions/notifications/delivery.py);
- at most MAX_RESPONSE_BYTES of an answer are read (push services answer
  201 with an empty body); a longer or unfinished body closes the connection
  instead of returning it to the pool;
- redirects are not followed;
- with `public_only` (outside dev mode), a connection to a non-public address
  or to a port other than 443 is refused after TCP connect, before TLS or any
  byte of the request, whatever DNS said when the member subscribed.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.push_subscriptions import PUSH_SERVICE_PORTS, is_public_address

MAX_RESPONSE_BYTES = 4096


class BlockedAddress(urllib3.exceptions.NewConnectionError):
    """The push endpoint resolved to an address or port our servers must not reach."""

    def __init__(self, conn: Any, message: str):
        super().__init__(conn, message)
        self.message = message


class DeadlineExceeded(Exception):
    """The send's deadline passed before the push service answered."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    retry_after: str | None


def connect_refusal(address: str, port: int) -> str | None:
    """Why a production send must not use this peer, or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "could not determine the peer address"
    if not is_public_address(ip):
        return f"refusing to connect to non-public address {ip}"
    if port not in PUSH_SERVICE_PORTS:
        return f"refusing to connect to port {port}: push services listen on 443"
    return None


# --- the deadline ------------------------------------------------------------

class _Send:
    """One POST in flight: when it must end and the connection it runs on."""

    __slots__ = ("at", "expired", "done", "conn", "sock")

    def __init__(self, at: float):
        self.at = at
        self.expired = False
        self.done = False
        self.conn: Any = None  # the urllib3 connection, once a request is made on it
        self.sock: Any = None  # the TCP socket this send opened, before the connection holds it


# Guards the _Send fields and each connection's `_nexus_send`, so the
# watchdog never shuts down a pooled connection another send has taken since.
_lock = threading.Lock()
_local = threading.local()


def _shutdown(sock: Any) -> None:
    if sock is None:
        return
    try:
        # socket.socket's shutdown, not SSLSocket's: that one also drops the
        # TLS object under the thread that is reading from it. A socket that
        # was closed or handed to TLS has no descriptor left, so this cannot
        # reach a descriptor number reused by someone else.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _abort(send: _Send) -> None:
    conn = send.conn
    if conn is not None and getattr(conn, "_nexus_send", None) is send:
        _shutdown(getattr(conn, "sock", None))
    _shutdown(send.sock)


def _attach(conn: Any) -> None:
    send: _Send | None = getattr(_local, "send", None)
    if send is None:
        return
    with _lock:
        send.conn = conn
        conn._nexus_send = send
        if send.expired:
            _abort(send)


def _expire(send: _Send) -> None:
    with _lock:
        if send.done:
            return
        send.expired = True
        _abort(send)


class _Watchdog:
    """One daemon thread expiring sends in deadline order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Send]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, send: _Send) -> None:
        with self._cond:
            heapq.heappush(self._heap, (send.at, next(self._seq), send))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="push-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                send = heapq.heappop(self._heap)[2]
            _expire(send)


_watchdog = _Watchdog()


# --- connections ---------------------------------------------------------------

class _Guarded:
    public_only = False
    timeout: Any

    def _new_conn(self) -> Any:
        send: _Send | None = getattr(_local, "send", None)
        if send is not None:
            left = send.at - time.monotonic()
            if left <= 0:
                raise urllib3.exceptions.ConnectTimeoutError(self, "the send's deadline passed before connecting")
            if not isinstance(self.timeout, (int, float)) or self.timeout > left:
                self.timeout = left
        sock = super()._new_conn()  # type: ignore[misc]
        if send is not None:
            # Reachable by the watchdog before urllib3 stores it (plain http
            # connects inside the request, after `request` attached us).
            with _lock:
                send.sock = sock
                if send.expired:
                    _shutdown(sock)
        if self.public_only:
            try:
                peer = sock.getpeername()
                refusal = connect_refusal(peer[0], peer[1])
            except OSError:
                refusal = "could not determine the peer address"
            if refusal is not None:
                sock.close()
                raise BlockedAddress(self, refusal)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _attach(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Guarded, HTTPConnection):
    pass


class _HTTPSConnection(_Guarded, HTTPSConnection):
    pass


class _PublicHTTPConnection(_Guarded, HTTPConnection):
    public_only = True


class _PublicHTTPSConnection(_Guarded, HTTPSConnection):
    public_only = True


def _pool(base: type, conn: type) -> type:
    return type(f"{conn.__name__}Pool", (base,), {"ConnectionCls": conn})


_POOLS = {
    False: {"http": _pool(HTTPConnectionPool, _HTTPConnection), "https": _pool(HTTPSConnectionPool, _HTTPSConnection)},
    True: {"http": _pool(HTTPConnectionPool, _PublicHTTPConnection),
           "https": _pool(HTTPSConnectionPool, _PublicHTTPSConnection)},
}


class _Adapter(HTTPAdapter):
    def __init__(self, *, public_only: bool, **kwargs: Any):
        self.public_only = public_only
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS[self.public_only])


def make_session(pool_size: int, *, public_only: bool) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy or netrc from the environment
    # pool_connections: how many push services keep a pool; pool_maxsize:
    # keep-alive connections per service, one per sending thread.
    adapter = _Adapter(public_only=public_only, pool_connections=32, pool_maxsize=pool_size, max_retries=0,
                       pool_block=False)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# --- one POST ------------------------------------------------------------------

def post(session: requests.Session, url: str, *, data: bytes, headers: dict[str, str],
         timeout: tuple[float, float], deadline: float) -> Answer:
    """POST and return the status line, finished by `deadline` (monotonic) or DeadlineExceeded.

    requests' exceptions other than the deadline's pass through.
    """
    if deadline <= time.monotonic():
        raise DeadlineExceeded()
    send = _Send(deadline)
    _local.send = send
    _watchdog.watch(send)
    response = None
    try:
        try:
            response = session.post(url, data=data, headers=headers, timeout=timeout, stream=True,
                                    allow_redirects=False)
        except requests.RequestException as e:
            if send.expired:
                raise DeadlineExceeded() from e
            raise
        if send.expired:
            # http.client takes the end of the stream for the end of the
            # headers, so an answer cut off by the watchdog can look whole.
            raise DeadlineExceeded()
        answer = Answer(response.status_code, response.reason or "", response.headers.get("Retry-After"))
        _drain(response)
        return answer
    finally:
        with _lock:
            send.done = True
        _local.send = None
        if response is not None:
            response.close()  # returns a drained connection to the pool, drops any other


def _drain(response: requests.Response) -> None:
    """Read the rest of a small answer so its connection can be reused."""
    length = response.headers.get("Content-Length", "")
    if length and (not length.isdigit() or int(length) > MAX_RESPONSE_BYTES):
        return
    try:
        response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=False)
    except Exception:  # noqa: BLE001 - the answer is known; a broken body only costs the connection
        pass
