"""A TCP relay on loopback that delays every byte by a fixed one-way latency.

The local server answers in microseconds, so anything that costs a round trip
on a real network (a refused message resent, a handshake) is invisible
against it. Put this relay between a client and the server to give each
direction ``one_way_ms`` of latency: bytes keep their order, a connection
costs a round trip before its first byte, and a half-close (EOF) is passed on
with the same delay. Bandwidth and loss are not modelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

_READ_SIZE = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy ``reader`` to ``writer``, each read delivered ``delay_s`` after it arrived."""
    # Reads are stamped on arrival and queued, so the delay adds no reordering
    # and a slow writer never holds up the stamping of later reads.
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        while True:
            data = await reader.read(_READ_SIZE)
            queue.put_nowait((time.monotonic() + delay_s, data))
            if not data:
                return

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()  # half-close: the other direction goes on
                return
            writer.write(data)
            await writer.drain()

    with contextlib.suppress(ConnectionError, OSError):
        # A failure on either side ends both (the task group cancels the other).
        async with asyncio.TaskGroup() as group:
            group.create_task(receive())
            group.create_task(deliver())


@contextlib.asynccontextmanager
async def latency_proxy(ws_base_url: str, one_way_ms: float) -> AsyncIterator[str]:
    """Relay to ``ws://127.0.0.1:PORT`` with ``one_way_ms`` each way; yields the relay's URL.

    Every relayed connection is closed, and its tasks finished, on exit.
    """
    target = urlsplit(ws_base_url)
    if target.hostname != "127.0.0.1" or target.port is None:
        raise ValueError(f"the relay only fronts a server on 127.0.0.1, not {ws_base_url!r}")
    delay_s = one_way_ms / 1000
    relays: set[asyncio.Task[None]] = set()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_w: asyncio.StreamWriter | None = None
        try:
            await asyncio.sleep(delay_s)  # the SYN's trip
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target.port)
            await asyncio.sleep(delay_s)  # the SYN-ACK's trip back
            await asyncio.gather(
                _pipe(client_r, server_w, delay_s), _pipe(server_r, client_w, delay_s)
            )
        except OSError:
            pass
        finally:
            for writer in (client_w, server_w):
                if writer is not None:
                    writer.close()

    def accepted(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(relay(client_r, client_w))
        relays.add(task)
        task.add_done_callback(relays.discard)

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{target.scheme}://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(relays):
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await server.wait_closed()
