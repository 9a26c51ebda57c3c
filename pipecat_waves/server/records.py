"""What the local server saw and did, kept for tests and benchmarks to inspect.

Records are off unless asked for (``LocalWavesServer(record=True)``), and
bounded when on: a long-running server holds flat memory either way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

#: Most entries kept per record list (connections, segments, messages of one
#: connection); older ones are dropped first.
RECORD_LIMIT = 10_000

#: Headers never kept: a record must not hold a credential.
_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


def safe_headers(headers: Any) -> CIMultiDict[str]:
    """The upgrade request's headers without credentials."""
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _SECRET_HEADERS)


@dataclass
class ConnectionRecord:
    """One accepted live socket.

    Attributes:
        id: 1-based, in accept order.
        headers: The upgrade request's headers (case-insensitive keys),
            credentials removed.
        query: The upgrade URL's query parameters.
        received: JSON values received, in order (the last
            :data:`RECORD_LIMIT`; none unless the server records).
        closed: The socket has closed.
        close_code: WebSocket close code, once closed (``None`` if it was
            dropped without one).
    """

    id: int
    headers: CIMultiDict[str]
    query: dict[str, str]
    received: deque[Any] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))
    closed: bool = False
    close_code: int | None = None


@dataclass
class SegmentRecord:
    """One released segment of text and what became of it.

    Attributes:
        connection_id: The connection it was requested on.
        context_id: Its context (``None`` for one-shot and legacy requests).
        text: The released text.
        request_id: The server's ``task_…`` id for it.
        external_request_id: The client ``request_id`` it answers (for a
            coalesced segment, that of the last fragment in it).
        chunks_sent: Audio frames sent for it.
        completed: Its ``complete`` frame was sent.
        cancelled: A ``cancel_request`` stopped it.
        coalesced: Its delayed ``complete`` was merged into the next segment's.
    """

    connection_id: int
    context_id: str | None
    text: str
    request_id: str
    external_request_id: str | None
    chunks_sent: int = 0
    completed: bool = False
    cancelled: bool = False
    coalesced: bool = False


@dataclass
class HttpRequestRecord:
    """One synthesis request on the SSE or sync endpoint, admitted or not.

    Attributes:
        endpoint: ``"sse"`` or ``"sync"``.
        body: The decoded JSON body as received (``None`` if it was not JSON).
        headers: The request's headers, credentials removed.
        peer: The client's ``(host, port)``: requests with the same peer came
            over the same TCP connection.
        status: The HTTP status answered.
        chunks_sent: SSE audio events written.
        chunks_total: SSE audio events the reply had.
        finished: The SSE stream ended with its ``done`` event.
        abandoned: The client closed the connection before the end.
    """

    endpoint: str
    body: Any
    headers: CIMultiDict[str]
    peer: tuple[str, int] | None
    status: int = 200
    chunks_sent: int = 0
    chunks_total: int = 0
    finished: bool = False
    abandoned: bool = False
