"""One WebSocket to the Waves live endpoint: open it, send without blocking, read.

This module knows sockets and nothing of the protocol's rules: messages to send
are queued and written by a task of their own, so no caller (the barge-in path
above all) ever waits on the network. What arrives is handed to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import websockets
from loguru import logger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pipecat_waves.protocol.constants import CLOSE_POLICY_VIOLATION, LIVE_PATH


class _RedactAuthorization(logging.Filter):
    """Hide the bearer token from ``websockets``' debug log of handshake headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "Bearer ***")
        return True


#: Logger handed to ``websockets``: its own, with the token redacted. A user who
#: turns on debug logging to see the handshake never sees the API key.
_WS_LOGGER = logging.getLogger("pipecat_waves.websockets")
_WS_LOGGER.addFilter(_RedactAuthorization())


class WavesConnectError(Exception):
    """Opening the live socket failed.

    Attributes:
        retry_after_s: Suggested wait before the next attempt, or None.
        permanent: Retrying cannot help (for example a rejected API key).
        refused: The server is up but turned the connection away (HTTP 429).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        refused: bool = False,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.permanent = permanent
        self.refused = refused
        self.retry_after_s = retry_after_s


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` names this machine."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def live_url(base_url: str, idle_timeout_s: int | None) -> str:
    """Build the live endpoint's URL from a base such as ``wss://api.smallest.ai``.

    Raises:
        ValueError: The scheme is not ws/wss (http/https are mapped), or it is
            plain ``ws://`` to a host that is not loopback, which would send
            the API key in clear text.
    """
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(
            f"base_url must start with wss:// (got {parts.scheme or 'no'} scheme in {base_url!r})"
        )
    if scheme == "ws" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"Refusing to send the API key over unencrypted ws:// to {parts.hostname}. "
            "Use a wss:// base_url, or ws:// only for a server on this machine (127.0.0.1)."
        )
    query = f"?{urlencode({'timeout': idle_timeout_s})}" if idle_timeout_s else ""
    return f"{scheme}://{parts.netloc}{parts.path}{LIVE_PATH}{query}"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def open_socket(
    url: str, api_key: str, *, extra_headers: dict[str, str], open_timeout_s: float
) -> ClientConnection:
    """Open the socket, turning every failure into a :class:`WavesConnectError`."""
    headers = {"Authorization": f"Bearer {api_key}", **extra_headers}
    host = urlsplit(url).netloc
    try:
        return await connect(
            url,
            additional_headers=headers,
            open_timeout=open_timeout_s,
            close_timeout=2.0,
            max_size=16 * 1024 * 1024,
            # Liveness is checked with the protocol's own ping message, which a
            # Waves server answers; WebSocket-level pings are left off.
            ping_interval=None,
            # Base64 PCM barely compresses; deflating it costs CPU on every
            # chunk for a few percent of bandwidth.
            compression=None,
            logger=_WS_LOGGER,
        )
    except InvalidStatus as e:
        status = e.response.status_code
        if status in (401, 403):
            raise WavesConnectError(_key_refused(status, host, api_key), permanent=True) from None
        if status == 429:
            raise WavesConnectError(
                "Waves refused the connection: concurrency limit reached (HTTP 429). "
                "Retrying with backoff; lower the number of simultaneous sessions or raise "
                "the account's concurrency.",
                refused=True,
                retry_after_s=_retry_after(e.response.headers),
            ) from None
        raise WavesConnectError(f"Waves at {host} answered HTTP {status} to the upgrade") from None
    except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as e:
        raise WavesConnectError(
            f"Cannot reach Waves at {host} ({type(e).__name__}: {e}). "
            "Check base_url and the network; retrying with backoff."
        ) from None


def _key_refused(status: int, netloc: str, api_key: str) -> str:
    """Why the key was refused and what to do, true to the server that refused it."""
    if not api_key.strip():
        return (
            f"The Waves server at {netloc} requires an API key and none was given (HTTP {status}). "
            "Pass api_key= (a Smallest.ai key, or the key a local server was started with)."
        )
    if is_loopback_host(urlsplit(f"//{netloc}").hostname):
        return (
            f"The local Waves server at {netloc} rejected the API key (HTTP {status}). "
            "Pass the key that server was started with as api_key."
        )
    return (
        f"Waves rejected the API key (HTTP {status}). Check the api_key you passed "
        "(or WAVES_API_KEY) and that it is active in the Smallest.ai console."
    )


@dataclass
class LaneHandlers:
    """Callbacks of a :class:`Lane`; both run on the event loop."""

    on_message: Callable[[int, str | bytes], Awaitable[None]]
    on_closed: Callable[[int, int | None, str], Awaitable[None]]


class Lane:
    """An open socket with a non-blocking outbox."""

    def __init__(self, lane_id: int, websocket: ClientConnection, handlers: LaneHandlers):
        self.id = lane_id
        self._ws = websocket
        self._handlers = handlers
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._closing = False
        self.opened_at = time.monotonic()
        self.messages_received = 0
        self._sender = asyncio.create_task(self._send_loop(), name=f"waves-send-{lane_id}")
        self._receiver = asyncio.create_task(self._receive_loop(), name=f"waves-recv-{lane_id}")

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message``; returns at once."""
        if not self._closing:
            self._outbox.put_nowait(message)

    def close(self) -> None:
        """Close after the queued messages are written; returns at once."""
        if not self._closing:
            self._closing = True
            self._outbox.put_nowait(None)

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake."""
        self._closing = True
        transport = getattr(self._ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def wait_closed(self) -> None:
        """Wait until both tasks have ended."""
        await asyncio.gather(self._sender, self._receiver, return_exceptions=True)

    async def shutdown(self) -> None:
        """Close promptly and wait for the tasks (used at pipeline end)."""
        self.close()
        try:
            await asyncio.wait_for(self.wait_closed(), timeout=3.0)
        except TimeoutError:
            self.abort()
            for task in (self._sender, self._receiver):
                task.cancel()
            await asyncio.gather(self._sender, self._receiver, return_exceptions=True)

    async def _send_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                with contextlib.suppress(Exception):
                    await self._ws.close()
                return
            try:
                await self._ws.send(json.dumps(message))
            except ConnectionClosed:
                return  # the receive loop reports the loss
            except Exception as e:  # a failed write means a broken socket
                logger.warning(f"Waves send failed on connection {self.id}: {e}")
                self.abort()
                return

    async def _receive_loop(self) -> None:
        code: int | None = None
        reason = ""
        try:
            async for message in self._ws:
                self.messages_received += 1
                await self._handlers.on_message(self.id, message)
        except ConnectionClosed as e:
            if e.rcvd is not None:
                code, reason = e.rcvd.code, e.rcvd.reason
            else:
                reason = "connection lost"
        except Exception as e:
            logger.warning(f"Waves connection {self.id} failed: {e}")
            reason = str(e)
        else:
            code = self._ws.close_code
            reason = self._ws.close_reason or ""
        finally:
            if not self._closing:
                self._closing = True
                self._outbox.put_nowait(None)
        await self._handlers.on_closed(self.id, code, reason)


def is_refusal_close(code: int | None) -> bool:
    """Whether a close code says the server turned the socket away (a limit was hit)."""
    return code == CLOSE_POLICY_VIOLATION
