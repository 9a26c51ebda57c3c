"""Public Waves clients against the local server, judged from the words they speak.

The server runs on its own event loop in a background thread, so synchronous
clients (the official SDK blocks on its sockets) and asynchronous ones can both
talk to it over loopback. It keeps the documented defaults: above all the
4 s hold-back of ``complete`` for a request that sends no
``complete_backoff_ms``, so a client that waits on ``complete`` pays what it
would pay on the real service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from pipecat_waves.server import LocalWavesServer, ToneBackend
from pipecat_waves.server.tones import transcribe_exact, words_of

API_KEY = "sk-compat-5e4d3c2b1a"
RATE = 16000
BAD_VOICE = "no-such-voice"

T = TypeVar("T")


class ThreadedServer:
    """A :class:`LocalWavesServer` serving from a background thread's event loop."""

    def __init__(self) -> None:
        """Start the loop thread and the server on it (documented defaults)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        # Records on: some tests count the segments the server released.
        self.server = LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True)
        self.call(self.server.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def stop(self) -> None:
        """Stop the server, then its loop."""
        self.call(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    @property
    def http_base(self) -> str:
        """``http://127.0.0.1:port``."""
        return self.server.base_url

    @property
    def ws_live_url(self) -> str:
        """The live socket's full URL."""
        return self.server.ws_base_url + "/waves/v1/tts/live"


@pytest.fixture(scope="session")
def waves() -> Iterator[ThreadedServer]:
    """One local server for every compatibility test."""
    server = ThreadedServer()
    yield server
    server.stop()


def spoken(pcm: bytes, text: str, *, also: str = "", rate: int = RATE) -> list[str]:
    """Words ``pcm`` speaks, named from the vocabulary of ``text``.

    Words of ``also`` (say, an interrupted earlier reply) are named too, so
    leftovers show up by name; anything else reads ``"<?>"``.
    """
    return transcribe_exact(pcm, rate, words_of(text), also=words_of(also))
