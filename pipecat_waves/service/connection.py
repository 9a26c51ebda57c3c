"""One WebSocket to the Waves live endpoint: open it, send without blocking, read.

This module knows sockets and nothing of the protocol's rules: messages to send
are queued and written by a task of their own, so no caller (the barge-in path
above all) ever waits on the network. What arrives is handed to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pipecat_waves.credentials import REDACTED, check_transport, is_loopback_host, scrub
from pipecat_waves.log import logger
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol.constants import LIVE_PATH, MAX_IDLE_TIMEOUT_S

__all__ = [
    "LiveSocket",
    "LiveSocketHandlers",
    "WavesConnectError",
    "is_loopback_host",
    "is_refusal_close",
    "live_url",
    "open_socket",
]

#: Largest server frame read. Audio comes in chunks of a few kilobytes; a
#: bigger frame is refused by the WebSocket layer before it is buffered.
MAX_SERVER_FRAME_BYTES = 4 * 1024 * 1024


class _RedactAuthorization(logging.Filter):
    """Hide the bearer token from ``websockets``' debug log of handshake headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], f"Bearer {REDACTED}")
        else:
            # Any other line (an error quoting a header, say) loses known keys.
            record.msg, record.args = scrub(record.getMessage()), ()
        return True


#: Logger handed to ``websockets``: its own, with the token redacted. A user who
#: turns on debug logging to see the handshake never sees the API key.
_WS_LOGGER = logging.getLogger("pipecat_waves.websockets")
_WS_LOGGER.addFilter(_RedactAuthorization())


class WavesConnectError(Exception):
    """Opening the live socket failed.

    ``str(error)`` never contains the API key: every message built from a
    library's exception is scrubbed.

    Attributes:
        retry_after_s: Suggested wait before the next attempt, or None.
        permanent: Retrying cannot help (a rejected key, a wrong URL).
        refused: The server is up but turned the connection away (HTTP 429).
        status: The HTTP status that answered the upgrade, if one did.
        host: Where the connection was going.
        detail: Why the server could not be reached (scrubbed), if it was not.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        refused: bool = False,
        retry_after_s: float | None = None,
        status: int | None = None,
        host: str = "",
        detail: str = "",
    ):
        super().__init__(message)
        self.permanent = permanent
        self.refused = refused
        self.retry_after_s = retry_after_s
        self.status = status
        self.host = host
        self.detail = detail

    @property
    def auth_rejected(self) -> bool:
        """The server refused the API key."""
        return pe.status_kind(self.status) is pe.ErrorKind.AUTH


def live_url(base_url: str, idle_timeout_s: int | None) -> str:
    """Build the live endpoint's URL from a base such as ``wss://api.smallest.ai``.

    Raises:
        ValueError: The scheme is not ws/wss (http/https are mapped); it is
            plain ``ws://`` to a host that is not loopback, which would send
            the API key in clear text; the base already holds the endpoint
            path (it would be doubled); or ``idle_timeout_s`` is not above 0
            and at most the documented 180 s.
    """
    parts = urlsplit(base_url.strip().rstrip("/"))
    # Checked first, and no message quotes the URL: it might hold a secret.
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "base_url must not hold credentials (user:password@); pass the key as api_key"
        )
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(
            "base_url must be an origin such as wss://api.smallest.ai "
            f"(got {_scheme_shown(parts.scheme)} scheme)"
        )
    check_transport(scheme, parts.hostname)
    if "/waves/" in f"{parts.path}/" or parts.query or parts.fragment:
        raise ValueError(
            "base_url holds a path or query; give only the origin, such as "
            f"wss://api.smallest.ai (the {LIVE_PATH} path is added for you)"
        )
    # Above the documented maximum the server would silently use 180 s and the
    # keep-alive, paced on the value asked for, would come too late.
    if idle_timeout_s is not None and not 0 < idle_timeout_s <= MAX_IDLE_TIMEOUT_S:
        raise ValueError(
            f"idle_timeout_s={idle_timeout_s} is outside what Waves honours; "
            f"use more than 0 and at most {MAX_IDLE_TIMEOUT_S} seconds"
        )
    query = f"?{urlencode({'timeout': idle_timeout_s})}" if idle_timeout_s else ""
    return f"{scheme}://{parts.netloc}{parts.path}{LIVE_PATH}{query}"


def _scheme_shown(scheme: str) -> str:
    return repr(scheme) if scheme.isalnum() and len(scheme) <= 10 else "no"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _ConnectWithoutRedirects(connect):
    """``websockets``' connect, minus redirects.

    A redirect would carry the ``Authorization`` header to wherever the
    ``Location`` points, possibly over plain text; it is reported instead.
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def _status_error(status: int, headers: Any, host: str, api_key: str | None) -> WavesConnectError:
    """What an HTTP answer to the upgrade means, and whether to try again."""
    kind = pe.status_kind(status)
    if kind is pe.ErrorKind.AUTH:
        return WavesConnectError(
            _key_refused(status, host, api_key or ""),
            permanent=True,
            status=status,
            host=host,
        )
    if kind is pe.ErrorKind.RATE_LIMIT:
        return WavesConnectError(
            pe.rate_limited_message("the connection") + "; retrying with backoff.",
            refused=True,
            retry_after_s=_retry_after(headers),
            status=status,
            host=host,
        )
    if 300 <= status < 400:
        return WavesConnectError(
            f"Waves at {host} redirected the connection (HTTP {status}); redirects are not "
            "followed, so the API key goes only where you sent it. Set base_url to the "
            "server's own wss:// origin.",
            permanent=True,
            status=status,
            host=host,
        )
    if 400 <= status < 500:
        # A request the server will never accept: retrying it cannot help.
        return WavesConnectError(
            f"Waves at {host} refused the connection with HTTP {status}. Check base_url "
            "(only the origin, such as wss://api.smallest.ai) and idle_timeout_s (at most 180).",
            permanent=True,
            status=status,
            host=host,
        )
    return WavesConnectError(
        f"Waves at {host} answered HTTP {status} to the upgrade; retrying with backoff.",
        status=status,
        host=host,
    )


async def open_socket(
    url: str, api_key: str | None, *, extra_headers: dict[str, str], open_timeout_s: float
) -> ClientConnection:
    """Open the socket, turning every failure into a :class:`WavesConnectError`.

    Whatever raised, the error's message is scrubbed of the key, and no
    redirect is followed.
    """
    parts = urlsplit(url)
    host = parts.netloc
    headers = dict(extra_headers)
    if api_key is not None:
        try:
            # live_url checked this already; checked again here, where the key is sent.
            check_transport(parts.scheme, parts.hostname)
        except ValueError as e:
            raise WavesConnectError(str(e), permanent=True, host=host) from None
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        return await _ConnectWithoutRedirects(
            url,
            additional_headers=headers,
            open_timeout=open_timeout_s,
            close_timeout=2.0,
            max_size=MAX_SERVER_FRAME_BYTES,
            # Liveness is checked with the protocol's own ping message, which a
            # Waves server answers; WebSocket-level pings are left off.
            ping_interval=None,
            # Base64 PCM barely compresses; deflating it costs CPU on every
            # chunk for a few percent of bandwidth.
            compression=None,
            logger=_WS_LOGGER,
        )
    except InvalidStatus as e:
        raise _status_error(e.response.status_code, e.response.headers, host, api_key) from None
    except TimeoutError:
        raise WavesConnectError(
            f"Cannot reach Waves at {host} (no answer within {open_timeout_s:g} s). "
            "Check base_url and the network; retrying with backoff.",
            host=host,
            detail="timed out",
        ) from None
    except Exception as e:
        # Anything else (refused, DNS, TLS, a malformed handshake): scrubbed,
        # because some libraries quote the request headers in their message.
        detail = scrub(f"{type(e).__name__}: {e}", api_key)
        raise WavesConnectError(
            f"Cannot reach Waves at {host} ({detail}). "
            "Check base_url and the network; retrying with backoff.",
            host=host,
            detail=detail,
        ) from None


def _key_refused(status: int, netloc: str, api_key: str) -> str:
    """Why the key was refused and what to do, true to the server that refused it."""
    return pe.key_refused(
        status,
        key_given=bool(api_key.strip()),
        server=netloc,
        local=is_loopback_host(urlsplit(f"//{netloc}").hostname),
    )


@dataclass
class LiveSocketHandlers:
    """Callbacks of a :class:`LiveSocket`; both run on the event loop."""

    on_message: Callable[[int, str | bytes], Awaitable[None]]
    on_closed: Callable[[int, int | None, str], Awaitable[None]]


class LiveSocket:
    """An open live socket with a non-blocking outbox."""

    def __init__(self, socket_id: int, websocket: ClientConnection, handlers: LiveSocketHandlers):
        self.id = socket_id
        self._ws = websocket
        self._handlers = handlers
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._closing = False
        self.opened_at = time.monotonic()
        self.messages_received = 0
        self._sender = asyncio.create_task(self._send_loop(), name=f"waves-send-{socket_id}")
        self._receiver = asyncio.create_task(self._receive_loop(), name=f"waves-recv-{socket_id}")

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
        """Drop the connection now, without a closing handshake.

        The sender is cancelled (nothing queued is worth writing to a dead
        socket); the receiver ends as the transport goes, and reports the
        close. :meth:`wait_closed` awaits both.
        """
        self._closing = True
        if self._sender is not asyncio.current_task():
            self._sender.cancel()
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
                logger.warning(f"Waves send failed on connection {self.id}: {scrub(str(e))}")
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
                code, reason = e.rcvd.code, scrub(e.rcvd.reason)
            else:
                reason = "connection lost"
        except Exception as e:
            reason = scrub(f"{type(e).__name__}: {e}")
            logger.warning(f"Waves connection {self.id} failed: {reason}")
        else:
            code = self._ws.close_code
            reason = scrub(self._ws.close_reason or "")
        finally:
            if not self._closing:
                self._closing = True
                self._outbox.put_nowait(None)
        await self._handlers.on_closed(self.id, code, reason)


def is_refusal_close(code: int | None) -> bool:
    """Whether a close code says the server turned the socket away (a limit was hit)."""
    return pe.closed_for_limit(code)
