"""Barge-in over HTTP: the response is closed at once, not one sample of it comes out after."""

from __future__ import annotations

from pipecat.frames.frames import InterruptionFrame, TTSAudioRawFrame
from pipecat.tests.utils import SleepFrame

from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.http.helpers import make_http_service, sse_texts
from tests.service.helpers import (
    API_KEY,
    contexts_in_order,
    errors,
    heard,
    llm_turn,
    run,
    split_at_interruption,
)

LONG_REPLY = (
    "Let me tell you about our menu. We have seven kinds of pasta tonight. "
    "There is also a fish special with lemon and herbs."
)
NEXT_REPLY = "Sure, go ahead."


async def test_no_interrupted_audio_after_the_interruption_and_the_stream_is_closed():
    # Events at real time: the first sentence is still streaming when the user speaks.
    behaviour = ServerBehaviour(chunk_interval_ms=20)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_http_service(server)
        down, up = await run(
            service,
            [
                *llm_turn(LONG_REPLY),
                SleepFrame(sleep=0.6),
                InterruptionFrame(),
                SleepFrame(sleep=0.3),
                *llm_turn(NEXT_REPLY),
            ],
        )
        requests = server.http_requests
    before, after = split_at_interruption(down)
    interrupted = contexts_in_order(before)
    assert len(interrupted) == 1, "the reply was playing when the user spoke"
    spoken_before = heard(before, LONG_REPLY)
    assert 0 < len(spoken_before) < len(LONG_REPLY.split()), "interrupted mid-way"
    stale = [f for f in after if isinstance(f, TTSAudioRawFrame) and f.context_id in interrupted]
    assert stale == [], "audio of the interrupted reply came out after the interruption"
    assert heard(after, NEXT_REPLY) == NEXT_REPLY.split(), "the next reply is spoken in full"
    assert errors(up) == [], "a barge-in is routine: no error"
    # The interrupted stream was closed by the client, not read to its end, and
    # the rest of the interrupted reply was never asked for.
    assert requests[0].abandoned and not requests[0].finished
    assert requests[0].chunks_sent < requests[0].chunks_total
    assert sse_texts(server)[1:] == [NEXT_REPLY]
