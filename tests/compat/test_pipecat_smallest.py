"""Pipecat's built-in ``SmallestTTSService`` (pipecat-ai 1.14.0) against the local server.

Two back-to-back LLM replies through a real pipeline, judged by the same
listener as this package's own service: every word of each reply, once, in
order, each reply in its own context.
"""

from __future__ import annotations

from pipecat.services.smallest.tts import SmallestTTSService

from tests.compat.conftest import API_KEY, ThreadedServer
from tests.service.conversation import Conversation, judge, run_conversation
from tests.service.helpers import RATE

FIRST = "Sure, let me check that for you."
SECOND = "Your table for four is booked at seven tonight. We will text you a reminder."


async def test_speaks_two_replies_whole(waves: ThreadedServer):
    service = SmallestTTSService(
        api_key=API_KEY,
        base_url=waves.server.ws_base_url,
        sample_rate=RATE,
        settings=SmallestTTSService.Settings(voice="avery"),
    )
    c = Conversation()
    c.say("first", FIRST)
    c.say("second", SECOND)  # right behind, as an LLM answers after a filler
    c.wait_heard(2, then_quiet_s=0.3, timeout_s=15, label="both replies played")

    result = await run_conversation(service, c)
    verdict = judge(result, max_gap_s=None)

    assert not result.unfinished
    assert verdict.problems == [], verdict.report()
