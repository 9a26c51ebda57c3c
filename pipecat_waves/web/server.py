"""The web demo's HTTP side: the page, and the WebRTC offer that starts a bot.

A browser loads ``/`` (``page.html``, shipped with the package), makes a
WebRTC offer with its microphone track, waits for its ICE candidates and
POSTs the offer to ``/api/offer``. The server answers it with a Pipecat
``SmallWebRTCConnection`` (aiortc) and starts a bot on that connection; the
answer carries aiortc's candidates, so no candidate exchange follows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from importlib import resources
from types import TracebackType
from typing import Any

from aiohttp import web
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

from pipecat_waves.log import logger

#: Where the page POSTs its offer.
OFFER_PATH = "/api/offer"
#: Longest a bot may take to stop when the server closes.
STOP_TIMEOUT_S = 2.0

#: Runs one bot on an answered connection, until the browser leaves.
BotRunner = Callable[[SmallWebRTCConnection], Awaitable[None]]


def page_html() -> str:
    """The demo page (one HTML file with inline script)."""
    return resources.files("pipecat_waves.web").joinpath("page.html").read_text("utf-8")


class WebDemoServer:
    """Serves the page on ``host:port`` and starts a bot per WebRTC offer.

    Use as an async context manager; leaving it stops every bot and closes
    every connection.
    """

    def __init__(self, run_bot: BotRunner, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Create the server (not started).

        Args:
            run_bot: Runs one bot on an answered connection.
            host: Interface to bind.
            port: Port; 0 picks a free one.
        """
        self._run_bot = run_bot
        self._host = host
        self._port = port
        self.app = web.Application()
        self.app.router.add_get("/", self._page)
        self.app.router.add_post(OFFER_PATH, self._offer)
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._bots: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The page's address."""
        if self._bound_port is None:
            raise RuntimeError("the server is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}/"

    async def start(self) -> None:
        """Start listening.

        Raises:
            OSError: The address cannot be bound.
        """
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._bound_port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop every bot, then the HTTP server."""
        bots = list(self._bots)
        for bot in bots:
            bot.cancel()
        if bots:
            await asyncio.wait(bots, timeout=STOP_TIMEOUT_S)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebDemoServer:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server and its bots."""
        await self.stop()

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(text=page_html(), content_type="text/html")

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
            sdp, kind = body["sdp"], body["type"]
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text="expected JSON with 'sdp' and 'type'") from None
        if kind != "offer" or not isinstance(sdp, str):
            raise web.HTTPBadRequest(text="expected an SDP offer")
        if "m=audio" not in sdp:
            raise web.HTTPBadRequest(text="the offer has no audio: the bot needs a microphone")
        # No ICE servers: host candidates only, nothing leaves the machine.
        connection = SmallWebRTCConnection()
        try:
            await connection.initialize(sdp=sdp, type=kind)
        except Exception as e:
            await connection.disconnect()
            raise web.HTTPBadRequest(text=f"cannot answer this offer: {e}") from None
        answer = connection.get_answer()
        if answer is None:
            await connection.disconnect()
            raise web.HTTPInternalServerError(text="no answer to the offer")
        bot = asyncio.create_task(self._bot(connection), name=f"web-bot-{answer['pc_id']}")
        self._bots.add(bot)
        bot.add_done_callback(self._bots.discard)
        logger.info(f"browser connected ({len(self._bots)} bot(s) running)")
        return web.json_response(answer)

    async def _bot(self, connection: SmallWebRTCConnection) -> None:
        try:
            await self._run_bot(connection)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.error(f"the bot stopped: {e}")
            with contextlib.suppress(Exception):
                await connection.disconnect()
        else:
            logger.info("browser left")
