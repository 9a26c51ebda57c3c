"""Fixtures for the local server tests: a server on loopback and a small client."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from pipecat_waves.protocol.constants import LIVE_PATH
from pipecat_waves.server import LocalWavesServer, ServerBehaviour, ToneBackend

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
RATE = 16000
RECV_TIMEOUT = 5.0

ServerFactory = Callable[..., Awaitable[LocalWavesServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start servers with the tone backend; every one is stopped afterwards."""
    servers: list[LocalWavesServer] = []

    async def factory(**behaviour: Any) -> LocalWavesServer:
        # These tests read a segment's ``complete`` as its end; the documented
        # 4 s hold-back (the server default) has tests of its own.
        behaviour.setdefault("complete_delay_ms", 0)
        # Codes are checked here; the documented flat shape (the default)
        # carries none, and has tests of its own.
        behaviour.setdefault("error_shape", "both")
        server = LocalWavesServer(
            api_key=KEY,
            backend=ToneBackend(),
            behaviour=ServerBehaviour(**behaviour),
            record=True,
        )
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> LocalWavesServer:
    return await make_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def request(text: str, voice: str = "avery", **fields: Any) -> dict[str, Any]:
    """A synthesis message at the test sample rate."""
    return {"text": text, "voice_id": voice, "sample_rate": RATE, **fields}


def fragment(text: str, context: str = "ctx", more: bool = True, **fields: Any) -> dict[str, Any]:
    """A continuation fragment."""
    return request(text, context_id=context, **{"continue": more}, **fields)


def audio_of(frame: dict[str, Any]) -> bytes:
    return base64.b64decode(frame["data"]["audio"])


def tone(text: str) -> bytes:
    """What the tone backend makes of ``text`` at the test rate."""
    return ToneBackend().synthesize(text, voice_id="avery", speed=1.0, sample_rate=RATE).pcm


class Client:
    """A live-socket client that reads JSON frames with a timeout."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(json.dumps(obj))

    async def recv(self, within: float = RECV_TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=within)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg!r}"
        return json.loads(msg.data)

    async def recv_until(
        self, done: Callable[[dict[str, Any]], bool], within: float = RECV_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Frames up to and including the first one ``done`` accepts."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while True:
                frame = await self.recv()
                frames.append(frame)
                if done(frame):
                    return frames

    async def completes(self, n: int, within: float = RECV_TIMEOUT) -> list[dict[str, Any]]:
        """Frames up to and including the ``n``-th ``complete``."""
        frames: list[dict[str, Any]] = []
        for _ in range(n):
            frames += await self.recv_until(is_complete, within)
        return frames

    async def ping_roundtrip(self) -> list[dict[str, Any]]:
        """Send a ping; return every frame up to and including the pong."""
        await self.send({"type": "ping"})
        return await self.recv_until(lambda f: f.get("type") == "pong")


def sent_as(server: LocalWavesServer, frame: dict[str, Any]) -> str | None:
    """The client ``request_id`` behind a frame, read from the server's records.

    Attributes frames without relying on the echo, which is off by default.
    """
    for segment in server.segments:
        if segment.request_id == frame.get("request_id"):
            return segment.external_request_id
    return None


def is_complete(frame: dict[str, Any]) -> bool:
    return frame.get("status") == "complete"


def of_status(frames: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("status") == status]


@pytest.fixture
async def connect(
    http: aiohttp.ClientSession,
) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Open live sockets to a server; all are closed afterwards."""
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def opener(
        server: LocalWavesServer, query: str = "", headers: dict[str, str] | None = None
    ) -> Client:
        url = server.ws_base_url + LIVE_PATH + (f"?{query}" if query else "")
        ws = await http.ws_connect(url, headers=AUTH if headers is None else headers)
        sockets.append(ws)
        return Client(ws)

    yield opener
    for ws in sockets:
        await ws.close()


async def wait_until(condition: Callable[[], bool], within: float = RECV_TIMEOUT) -> None:
    """Wait for ``condition`` to hold, failing after ``within`` seconds."""
    async with asyncio.timeout(within):
        # Polling: the conditions are plain record fields with no event to await.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
