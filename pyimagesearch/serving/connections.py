"""Connection rules for serve_model.py that uvicorn has no setting for.

Uvicorn (0.54, on h11: httptools is not a dependency) times a connection out only
*after* it has answered a request (``timeout_keep_alive``). A connection that opens and
never finishes its request head is held forever, and ``limit_concurrency`` counts such
connections, so 130 clients that each send half a header line lock every other client
out, and what the others get is uvicorn's plain-text 503. ``h11_max_incomplete_event_size``
bounds the size of a head, not the time it takes. So this subclass of uvicorn's h11
protocol adds, per connection:

- a **header timeout**: from the moment a connection opens (or its previous answer was
  sent) the client has ``header_timeout_s`` to send a complete request head, else the
  connection is closed (with a JSON 408 when part of a head had arrived);
- an **idle-connection limit**: when ``max_connections`` connections are open, a new one
  makes room by closing a connection that is *waiting* for its request head (idle
  between requests, or still sending a head), with a JSON 503: one of the client address
  holding the most such connections, the one waiting longest. Connections with a request in progress
  are never closed for room; when every connection has one, the new connection is
  accepted and its request gets a JSON 503 from ``serve.RequestGuard``, which bounds the
  requests in progress by the same number (uvicorn's ``limit_concurrency`` is left off:
  its 503 is plain text and it counts idle connections);
- JSON for the protocol's own refusal of a malformed request (uvicorn writes plain text).

The body of a request is timed by ``serve.RequestGuard`` (ASGI middleware), which can
answer with a JSON 408 while the application still holds the request. With several
server processes every rule holds per process.
"""

from __future__ import annotations

import http
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

LOG_EVERY_S = 10.0  # a flood of slow clients is summed up, not logged line by line


def json_error(reason: str) -> bytes:
    """The body every refusal of this server has: ``{"error", "file", "reason"}``."""
    return json.dumps({"error": reason, "file": None, "reason": reason}).encode()


def raw_response(status: int, reason: str) -> bytes:
    """A whole HTTP/1.1 response with a JSON body that closes the connection: written
    straight to the socket where h11 has no request to answer (a head never finished)."""
    body = json_error(reason)
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@dataclass(frozen=True)
class ConnectionRules:
    max_connections: int = 128
    header_timeout_s: float = 10.0


class Tally:
    """Counts an event and says so on the uvicorn error log at most every LOG_EVERY_S."""

    def __init__(self, message: str) -> None:
        self.message, self.count, self.logged_at = message, 0, -math.inf

    def add(self, now: float) -> None:
        self.count += 1
        if now - self.logged_at >= LOG_EVERY_S:
            logging.getLogger("uvicorn.error").warning(self.message, self.count)
            self.logged_at, self.count = now, 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and an idle-connection limit; the
    rules are set on the class by serve_model.py (or, in a worker process, by
    ``serve.app_from_environment``): one process serves one server."""

    rules = ConnectionRules()
    timed_out = Tally("closed %d connection(s) that sent no complete request head in time")
    evicted = Tally("at the connection limit: closed %d connection(s) waiting for a request")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timer: Any = None  # armed while the connection waits for a request head
        self.head_cycle: Any = None  # the request cycle current when the wait began
        self.head_started = False  # part of a head has arrived since then
        self.waiting_since = 0.0

    # --- uvicorn's protocol interface ------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._make_room()
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.head_timer is not None:
            self.head_started = True
        super().data_received(data)
        if self.head_timer is not None and self.cycle is not self.head_cycle:
            self._stop_waiting()  # a request head arrived: the application has it now

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()  # may start a pipelined request (a new cycle)
        if not self.transport.is_closing() and self.cycle is before:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._stop_waiting()
        self.transport.write(raw_response(400, f"invalid HTTP request: {msg}"))
        self.transport.close()

    # --- the rules -------------------------------------------------------------------

    def _await_head(self) -> None:
        self._stop_waiting()
        self.head_cycle, self.head_started = self.cycle, False
        self.waiting_since = self.loop.time()
        self.head_timer = self.loop.call_later(self.rules.header_timeout_s, self._head_timed_out)

    def _stop_waiting(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _drop(self, status: int, reason: str, *, answer_idle: bool = False) -> None:
        """Close a connection waiting for its request head; a client that had sent part
        of one (or any client, with ANSWER_IDLE) gets STATUS with REASON as JSON first."""
        self._stop_waiting()
        if self.transport.is_closing():
            return
        if self.head_started or answer_idle:
            self.transport.write(raw_response(status, reason))
        self.transport.close()

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing() or self.cycle is not self.head_cycle:
            return
        seconds = self.rules.header_timeout_s
        self._drop(408, f"no complete request head within {seconds:g} s")
        self.timed_out.add(self.loop.time())

    def _make_room(self) -> None:
        """Below max_connections open ones after this one arrives, closing connections
        that wait for a request head, if there are any to close."""
        open_now = [c for c in self.connections if not c.transport.is_closing()]
        excess = len(open_now) + 1 - self.rules.max_connections
        if excess <= 0:
            return
        waiting = [c for c in open_now if getattr(c, "head_timer", None) is not None]
        for _ in range(min(excess, len(waiting))):
            per_client = Counter(c.client_host() for c in waiting)
            victim = min(waiting, key=lambda c: (-per_client[c.client_host()], c.waiting_since))
            waiting.remove(victim)
            # Answered even when no byte of a head has been read: under load, asyncio runs
            # a new connection's connection_made before it reads the bytes already waiting
            # on older ones, so "has sent nothing" cannot be told from "not read yet"
            # (measured: 150 slow clients, the evicted ones closed without a word).
            victim._drop(
                503, "the server is at its connection limit; this connection was idle",
                answer_idle=True,
            )  # fmt: skip
            self.evicted.add(self.loop.time())

    def client_host(self) -> str:
        return self.client[0] if self.client else ""
