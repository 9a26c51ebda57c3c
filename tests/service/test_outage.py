"""A reply that cannot start during an outage fails once and is never spoken late."""

from __future__ import annotations

import asyncio
import socket

from pipecat.tests.utils import SleepFrame
from pipecat.utils.errors import ErrorCategory

from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import API_KEY, errors, heard, llm_turn, make_service, run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_reply_during_an_outage_fails_once_and_is_not_spoken_after_it():
    port = _free_port()
    first = LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), port=port)
    second = LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), port=port, record=True)
    await first.start()
    service = make_service(first, reconnect_backoff_s=(0.05, 0.2))
    service._session.config.outage_budget_s = 0.3
    events: list[str] = []

    async def outage() -> None:
        # The server goes away after the first reply and is back well after
        # the second reply's budget ran out (and before the third).
        await asyncio.sleep(0.6)
        await first.stop()
        events.append("down")
        await asyncio.sleep(1.4)
        await second.start()
        events.append("up")

    outage_task = asyncio.create_task(outage())
    try:
        down, up = await run(
            service,
            [
                *llm_turn("Before the outage."),
                SleepFrame(1.0),  # the server is down from 0.6 s
                *llm_turn("During the outage."),
                SleepFrame(1.8),  # back at about 2.0 s
                *llm_turn("After the outage."),
                SleepFrame(0.3),
            ],
        )
        await outage_task
    finally:
        await first.stop()
        await second.stop()
    assert events == ["down", "up"]
    errs = errors(up)
    assert len(errs) == 1, [e.error for e in errs]
    assert "rather than spoken late" in errs[0].error
    assert errs[0].category is ErrorCategory.CONNECTIVITY
    words = heard(down, "Before the outage. During the outage. After the outage.")
    assert words == ["Before", "the", "outage.", "After", "the", "outage."]
    # The server that came back never received the dropped reply.
    texts = [m.get("text", "") for c in second.connections for m in c.received]
    assert not any("During" in t for t in texts)
    assert any("After" in t for t in texts)
