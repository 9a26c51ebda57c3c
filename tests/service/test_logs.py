"""Logs at the level a user wants: INFO once per thing that matters, detail at DEBUG."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import API_KEY, RATE


@contextmanager
def captured() -> Iterator[list[tuple[str, str]]]:
    """(level, message) of every log record of this package."""
    records: list[tuple[str, str]] = []

    def sink(message) -> None:
        record = message.record
        if record["name"].startswith("pipecat_waves"):
            records.append((record["level"].name, record["message"]))

    sink_id = logger.add(sink, level="TRACE")
    try:
        yield records
    finally:
        logger.remove(sink_id)


async def test_info_says_connected_once_and_chunks_stay_at_debug():
    with captured() as records:
        async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
            tts = WavesTTSService(api_key=API_KEY, base_url=server.ws_base_url, sample_rate=RATE)
            await run_test(tts, frames_to_send=[TTSSpeakFrame("One. Two words. Three more words.")])
            opened = len(server.connections)
    client_info = [m for lvl, m in records if lvl == "INFO" and "WavesTTSService" in m]
    assert opened >= 2  # the main socket and the warm spare
    assert [m for m in client_info if "connected" in m] == [client_info[0]]
    assert len(client_info) == 1, client_info
    assert not [m for lvl, m in records if lvl != "DEBUG" and "chunk" in m]
    assert any(lvl == "DEBUG" and "chunk" in m for lvl, m in records)  # the detail is there


async def test_each_reconnect_attempt_is_logged_once_not_per_socket():
    # A port that accepts and hangs up at once: every attempt is counted.
    attempts = 0

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()

    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    with captured() as records:
        tts = WavesTTSService(
            api_key=API_KEY,
            base_url=f"ws://127.0.0.1:{port}",
            sample_rate=RATE,
            reconnect_backoff_s=(0.05, 0.1),
        )
        await run_test(tts, frames_to_send=[SleepFrame(1.0)], expected_up_frames=None)
    listener.close()
    await listener.wait_closed()
    lines = [(lvl, m) for lvl, m in records if "Cannot reach" in m]
    # The main and the spare socket both try once; then one task alone retries
    # a server that is down, and each attempt is one line, a warning only first.
    assert attempts >= 10
    assert [lvl for lvl, _ in lines].count("WARNING") == 1
    # (An attempt cut short by the pipeline's end is counted but never logged.)
    assert attempts - 1 <= len(lines) <= attempts, (len(lines), attempts)
