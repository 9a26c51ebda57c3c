"""State shared by every endpoint of one local server."""

from __future__ import annotations

import hmac
import itertools
import uuid
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from pipecat_waves.server.backends import SpeechBackend
from pipecat_waves.server.behaviour import ServerBehaviour
from pipecat_waves.server.dicts import DictStore
from pipecat_waves.server.records import (
    RECORD_LIMIT,
    ConnectionRecord,
    HttpRequestRecord,
    SegmentRecord,
)


def _bounded() -> deque:
    return deque(maxlen=RECORD_LIMIT)


@dataclass
class ServerState:
    """Records, counters and settings of one server instance.

    Attributes:
        api_key: The accepted bearer token; ``None`` disables authentication.
        backend: Turns text into audio.
        behaviour: Switches, read whenever they matter (tests may flip them).
        record: Keep the records below (tests); off, they stay empty.
        connections: Accepted live sockets, in accept order (the last
            ``RECORD_LIMIT``).
        segments: Released segments across all connections, in release
            order (the last ``RECORD_LIMIT``).
        http_requests: SSE and sync synthesis requests, in arrival order
            (the last ``RECORD_LIMIT``).
        active: Live sockets and HTTP streams open right now.
        rejected_connections: Upgrades turned away by ``max_connections``.
        abandoned_upgrades: Live upgrades the client left before the answer.
        synthesis_requests: Synthesis-bearing messages seen (for ``error_on_request``).
        drop_fired: ``drop_after_chunks`` has fired.
        stall_fired: ``stall_after_chunks`` has fired.
        dicts: Pronunciation dictionaries, per API key.
    """

    api_key: str | None
    backend: SpeechBackend
    behaviour: ServerBehaviour
    record: bool = False
    connections: deque[ConnectionRecord] = field(default_factory=_bounded)
    segments: deque[SegmentRecord] = field(default_factory=_bounded)
    http_requests: deque[HttpRequestRecord] = field(default_factory=_bounded)
    connection_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    active: int = 0
    rejected_connections: int = 0
    abandoned_upgrades: int = 0
    synthesis_requests: int = 0
    drop_fired: bool = False
    stall_fired: bool = False
    context_slots: set[tuple[int, str]] = field(default_factory=set)
    dicts: DictStore = field(default_factory=DictStore)

    def at_capacity(self) -> bool:
        """Whether one more socket or stream would exceed ``max_connections``."""
        limit = self.behaviour.max_connections
        return limit is not None and self.active >= limit

    def count_synthesis_request(self) -> bool:
        """Count a synthesis-bearing message; ``True`` if it must fail instead."""
        self.synthesis_requests += 1
        return self.synthesis_requests == self.behaviour.error_on_request

    @staticmethod
    def key_of(request: web.BaseRequest) -> str:
        """The bearer token a request carries (empty if none): who owns its dictionaries."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def is_authorized(self, request: web.BaseRequest) -> bool:
        """Check the bearer token in constant time (the key is never logged)."""
        if self.api_key is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "surrogateescape"),
            self.api_key.encode("utf-8", "surrogateescape"),
        )


def new_request_id() -> str:
    """A fresh server-side request id."""
    return f"task_{uuid.uuid4().hex}"


def new_session_id(prefix: str = "ws") -> str:
    """A fresh server-side session id."""
    return f"{prefix}_{uuid.uuid4().hex}"


def unauthorized_response() -> web.Response:
    """The 401 every endpoint answers to a missing or wrong key."""
    return web.json_response(
        {"error": "Unauthorized", "message": "Bearer token is missing or invalid."}, status=401
    )


def too_many_response() -> web.Response:
    """The 429 answered when ``max_connections`` is reached."""
    return web.json_response(
        {"error": "TooManyRequests", "message": "Concurrency limit reached; retry shortly."},
        status=429,
        headers={"Retry-After": "1"},
    )


def server_error_response() -> web.Response:
    """The 500 answered to the request ``error_on_request`` picks, as the API documents it."""
    return web.json_response(
        {"error": "InternalServerError", "message": "An unexpected error occurred."}, status=500
    )
