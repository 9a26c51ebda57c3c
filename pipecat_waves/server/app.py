"""The local Waves-compatible server: routes, the live upgrade, and its lifecycle."""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

from aiohttp import web
from loguru import logger

from pipecat_waves.protocol import constants as c
from pipecat_waves.server.backends import SpeechBackend
from pipecat_waves.server.behaviour import ServerBehaviour
from pipecat_waves.server.http import MAX_BODY_BYTES, HttpHandlers
from pipecat_waves.server.live import MAX_FRAME_BYTES, LiveConnection
from pipecat_waves.server.records import (
    ConnectionRecord,
    HttpRequestRecord,
    SegmentRecord,
    safe_headers,
)
from pipecat_waves.server.state import ServerState, too_many_response, unauthorized_response

#: The WebSocket layer's frame limit, checked on the frame header before the
#: payload is read. Frames a little over MAX_FRAME_BYTES still reach the
#: handler, which answers MESSAGE_TOO_LARGE and keeps the socket; beyond this,
#: the socket is closed with 1009 (message too big) without buffering them.
TRANSPORT_MAX_FRAME_BYTES = 4 * MAX_FRAME_BYTES

#: How long a server-side close waits for the client's close reply.
_CLOSE_TIMEOUT_S = 2.0

#: Shortest idle timeout a fractional ``?timeout=`` may ask for.
_MIN_FRACTIONAL_TIMEOUT_S = 0.05


def idle_timeout_from_query(value: str | None, default: float) -> float:
    """Read ``?timeout=`` in seconds; garbage means ``default``.

    Whole numbers are clamped to [1, 180] as the service documents. A
    fractional value is honoured down to 50 ms, so tests need not wait a
    whole second for a timeout; it is still capped at 180.
    """
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        return default
    if math.isnan(seconds):
        return default
    low = 1.0 if seconds.is_integer() else _MIN_FRACTIONAL_TIMEOUT_S
    return min(max(seconds, low), float(c.MAX_IDLE_TIMEOUT_S))


class _LiveEndpoint:
    """``GET /waves/v1/tts/live``: authenticate, admit, upgrade, serve."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self.open: set[LiveConnection] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except ConnectionResetError:
            # The client went away mid-handshake (some clients do after every
            # turn): routine, and nothing to answer.
            logger.debug("live upgrade abandoned by the client")
            self._state.abandoned_upgrades += 1
            return web.Response(status=499)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        state = self._state
        delay = state.behaviour.handshake_delay_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if not state.is_authorized(request):
            logger.info("live upgrade refused: missing or wrong API key")
            if state.behaviour.auth_failure == "close_after_upgrade":
                return await self._accept_and_refuse_auth(request)
            return unauthorized_response()
        if state.at_capacity():
            state.rejected_connections += 1
            if state.behaviour.reject_with == "http_429":
                return too_many_response()
            return await self._accept_and_refuse(request)
        # No autoclose: the connection answers the client's close itself, after
        # freeing its concurrency slots (see LiveConnection.run).
        ws = web.WebSocketResponse(
            max_msg_size=TRANSPORT_MAX_FRAME_BYTES,
            autoping=True,
            autoclose=False,
            timeout=_CLOSE_TIMEOUT_S,
        )
        await ws.prepare(request)
        return await self._serve(request, ws)

    async def _accept_and_refuse(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=_CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        await ws.close(code=c.CLOSE_POLICY_VIOLATION, message=b"Too many concurrent connections")
        return ws

    async def _accept_and_refuse_auth(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=_CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        await ws.send_json({"status": "error", "message": "Unauthorized: invalid API key"})
        await ws.close(code=c.CLOSE_POLICY_VIOLATION, message=b"Unauthorized")
        return ws

    async def _serve(
        self, request: web.Request, ws: web.WebSocketResponse
    ) -> web.WebSocketResponse:
        state = self._state
        record = ConnectionRecord(
            id=next(state.connection_ids),
            headers=safe_headers(request.headers if state.record else {}),
            query=dict(request.query) if state.record else {},
        )
        if state.record:
            state.connections.append(record)
        timeout = idle_timeout_from_query(
            request.query.get("timeout"), state.behaviour.idle_timeout_s
        )
        connection = LiveConnection(state, request, ws, record, timeout)
        logger.info(f"live connection {record.id} accepted")
        state.active += 1
        self.open.add(connection)
        try:
            await connection.run()
        finally:
            self.open.discard(connection)
            state.active -= 1
        return ws


def build_app(state: ServerState) -> tuple[web.Application, _LiveEndpoint]:
    """Create the aiohttp application serving every endpoint."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    live = _LiveEndpoint(state)
    http = HttpHandlers(state)
    app.router.add_get(c.LIVE_PATH, live.handle)
    app.router.add_post(c.LIVE_PATH, http.sse)
    app.router.add_post(c.SYNC_PATH, http.sync)
    app.router.add_get(c.VOICES_PATH, http.voices)
    app.router.add_get(c.PRONUNCIATION_DICTS_PATH, http.dicts_list)
    app.router.add_post(c.PRONUNCIATION_DICTS_PATH, http.dicts_create)
    app.router.add_put(c.PRONUNCIATION_DICTS_PATH, http.dicts_update)
    app.router.add_delete(c.PRONUNCIATION_DICTS_PATH, http.dicts_delete)
    return app, live


def _default_backend() -> SpeechBackend:
    # Imported here: Piper is an optional extra and slow to import.
    from pipecat_waves.server.piper_backend import PiperBackend

    return PiperBackend()


class LocalWavesServer:
    """A Waves-compatible server on a local port, for tests, benchmarks and demos.

    Args:
        api_key: The bearer token clients must send; ``None`` accepts anyone.
        backend: The synthesizer; ``None`` means Piper (the ``voice`` extra).
        behaviour: Switches for behaviours the protocol leaves open.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        record: Keep what was received and released for inspection (tests);
            bounded to the last ``RECORD_LIMIT`` entries of each kind.

    Example::

        async with LocalWavesServer(api_key="k", backend=ToneBackend()) as server:
            url = server.ws_base_url + "/waves/v1/tts/live"
    """

    def __init__(
        self,
        api_key: str | None,
        *,
        backend: SpeechBackend | None = None,
        behaviour: ServerBehaviour | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = False,
    ) -> None:
        self._state = ServerState(
            api_key=api_key,
            backend=backend if backend is not None else _default_backend(),
            behaviour=behaviour if behaviour is not None else ServerBehaviour(),
            record=record,
        )
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._live: _LiveEndpoint | None = None

    # ------------------------------------------------------------ properties

    @property
    def behaviour(self) -> ServerBehaviour:
        """The live switches; assign fields (or a new object) between turns."""
        return self._state.behaviour

    @behaviour.setter
    def behaviour(self, value: ServerBehaviour) -> None:
        self._state.behaviour = value

    @property
    def backend(self) -> SpeechBackend:
        """The synthesizer in use."""
        return self._state.backend

    @property
    def connections(self) -> list[ConnectionRecord]:
        """Accepted live sockets, in accept order (refused ones excluded).

        A snapshot; empty unless the server was made with ``record=True``.
        """
        return list(self._state.connections)

    @property
    def segments(self) -> list[SegmentRecord]:
        """Released segments of every connection, in release order.

        A snapshot; empty unless the server was made with ``record=True``.
        """
        return list(self._state.segments)

    @property
    def http_requests(self) -> list[HttpRequestRecord]:
        """SSE and sync synthesis requests, in arrival order (refused ones too).

        A snapshot; empty unless the server was made with ``record=True``.
        """
        return list(self._state.http_requests)

    @property
    def rejected_connections(self) -> int:
        """Live upgrades refused by ``max_connections`` (either way)."""
        return self._state.rejected_connections

    @property
    def abandoned_upgrades(self) -> int:
        """Live upgrades the client left before the server could answer."""
        return self._state.abandoned_upgrades

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self._host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        """``ws://host:port``; clients append the live path."""
        return f"ws://{self._host}:{self.port}"

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        app, self._live = build_app(self._state)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
        await site.start()
        self._port = self._bound_port(self._runner)
        logger.info(f"local Waves server listening on {self.base_url}")

    @staticmethod
    def _bound_port(runner: web.AppRunner) -> int:
        for address in runner.addresses:
            if isinstance(address, tuple):
                return int(address[1])
        raise RuntimeError("server bound no TCP address")

    async def stop(self) -> None:
        """Close every socket and stop serving."""
        if self._runner is None:
            return
        if self._live is not None:
            await asyncio.gather(
                *(conn.close() for conn in list(self._live.open)), return_exceptions=True
            )
        await self._runner.cleanup()
        self._runner = None
        logger.info("local Waves server stopped")

    async def __aenter__(self) -> LocalWavesServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
