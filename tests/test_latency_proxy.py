"""The benchmarks' latency relay passes bytes intact, in order, never sooner than its delay."""

from __future__ import annotations

import asyncio
import time

import pytest

from benchmarks.latency_proxy import latency_proxy

ONE_WAY_MS = 30


async def test_the_relay_keeps_bytes_and_order_and_passes_a_half_close_on():
    received = bytearray()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            received.extend(data)
            writer.write(data)
            await writer.drain()
        writer.write(b"bye")  # the client's EOF arrived; this direction is still open
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payload = bytes(range(256)) * 400  # 100 KiB in many reads
    try:
        async with latency_proxy(f"ws://127.0.0.1:{port}", ONE_WAY_MS) as url:
            relay_port = int(url.rsplit(":", 1)[1])
            started = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
            writer.write(payload[:1])
            await writer.drain()
            first = await reader.readexactly(1)
            first_round_trip_s = time.monotonic() - started
            writer.write(payload[1:])
            writer.write_eof()
            rest = await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert first + rest == payload + b"bye"
    assert bytes(received) == payload
    # Connecting and one byte there and back: at least two round trips of delay.
    assert first_round_trip_s >= 3.5 * ONE_WAY_MS / 1000  # 4 delays, less timer slack


async def test_the_relay_fronts_only_a_loopback_server():
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        async with latency_proxy("ws://localhost:1", ONE_WAY_MS):
            pass
