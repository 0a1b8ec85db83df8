"""Connections with deadlines: uvicorn's HTTP/1.1 protocol (h11), bounded where it is not.

uvicorn closes a connection that stays idle after an answer (`timeout_keep_alive`), but a client that
sends a header's bytes slowly (or connects and sends a few bytes) holds its connection, with no limit
in time: a few hundred such clients take every file descriptor. Here a whole request header must
arrive within `header_timeout` of the connection's opening or of its previous answer; otherwise the
connection is closed. Past `max_connections` open connections, a new one is answered 503 (JSON, with
`Retry-After`) and closed. The body has its own deadline, kept by the application, which reads it.

uvicorn takes the protocol class as `Config(http=...)`; `deadline_protocol` makes one bound to the
server's limits and metrics. It extends uvicorn's own class at the asyncio protocol's methods (`connection_made`,
`data_received`, `connection_lost`), so the HTTP parsing stays uvicorn's.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from inceptionnet.serving.limits import Limits
from inceptionnet.serving.metrics import Metrics


def deadline_protocol(limits: Limits, metrics: Metrics) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a header deadline and a cap on open connections."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # the `serve` extra, imported when a server starts

    class DeadlineProtocol(H11Protocol):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.header_timer: asyncio.TimerHandle | None = None
            if len(self.connections) > limits.max_connections:
                metrics.refused("connections")
                transport.write(_busy(limits))
                transport.close()
                return
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():  # refused, or past its deadline: nothing more is read
                return
            super().data_received(data)
            if self._reading_header():
                if self.header_timer is None:  # the first bytes of a request after an answer (uvicorn's
                    self._arm_header_timer()  # keep-alive timer bounds the idle wait before them)
            else:
                self._disarm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _reading_header(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self.header_timer = self.loop.call_later(limits.header_timeout, self._header_deadline)

        def _disarm_header_timer(self) -> None:
            timer = getattr(self, "header_timer", None)
            if timer is not None:
                timer.cancel()
            self.header_timer = None

        def _header_deadline(self) -> None:
            self.header_timer = None
            if self._reading_header() and not self.transport.is_closing():
                metrics.refused("header_timeout")
                self.transport.close()

    return DeadlineProtocol


def _busy(limits: Limits) -> bytes:
    """A whole HTTP/1.1 503 answer, written before any request is read."""
    body = json.dumps(
        {"error": f"this server has {limits.max_connections} connections open, its limit; retry later"}
    ).encode()
    head: dict[str, Any] = {
        "content-type": "application/json",
        "content-length": len(body),
        "retry-after": limits.retry_after,
        "connection": "close",
    }
    lines = "".join(f"{name}: {value}\r\n" for name, value in head.items())
    return f"HTTP/1.1 503 Service Unavailable\r\n{lines}\r\n".encode() + body
