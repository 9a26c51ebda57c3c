"""A TCP relay on loopback that delays every byte by a fixed one-way latency.

The local server answers in microseconds, so anything that costs a round trip
on a real network (a refused message resent, a handshake) is invisible
against it. Put this relay between a client and the server to give each
direction ``one_way_ms`` of latency, in order, as a network path would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    # Each read is stamped when it arrives and written once its delay has
    # passed; a queue keeps the order, so the latency adds no reordering.
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay_s, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        pass
    finally:
        sender.cancel()
        writer.close()


@contextlib.asynccontextmanager
async def latency_proxy(ws_base_url: str, one_way_ms: float) -> AsyncIterator[str]:
    """Relay to ``ws://127.0.0.1:PORT`` with ``one_way_ms`` each way; yields the relay's URL."""
    target = urlsplit(ws_base_url)
    assert target.hostname == "127.0.0.1" and target.port is not None
    delay_s = one_way_ms / 1000

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay_s)  # the SYN's trip
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target.port)
        except OSError:
            client_w.close()
            return
        await asyncio.sleep(delay_s)  # the SYN-ACK's trip back
        await asyncio.gather(_pipe(client_r, server_w, delay_s), _pipe(server_r, client_w, delay_s))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{target.scheme}://127.0.0.1:{port}"
    finally:
        server.close()
