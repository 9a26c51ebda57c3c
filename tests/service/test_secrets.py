"""The API key never shows up in logs, reprs or errors."""

from __future__ import annotations

import logging

import pytest
from loguru import logger

from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import API_KEY, heard, llm_turn, make_service, run


async def test_key_is_absent_from_every_log_even_at_debug(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    sink = logger.add(lines.append, level="TRACE")
    try:
        async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
            service = make_service(server)
            down, up = await run(service, llm_turn("Your code is safe."))
    finally:
        logger.remove(sink)
    assert heard(down, "Your code is safe.") == ["Your", "code", "is", "safe."]
    # The handshake headers were logged (websockets logs them at debug) ...
    assert "Bearer ***" in caplog.text
    # ... but never the key itself, there or anywhere else.
    everything = caplog.text + "".join(lines) + repr(service) + "".join(map(str, up))
    assert API_KEY not in everything
