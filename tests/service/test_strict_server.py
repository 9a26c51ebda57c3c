"""A whole conversation against a server that takes every open point the hard way.

Each switch below picks the least helpful of the plausible readings of
Smallest's documents: no request-id echo, cancels that leave released audio
streaming, ``complete`` delayed by the documented 4 s backoff and merged,
contexts interleaved, no keep-alive support, flat errors, no word timestamps,
chunks cut mid-sample. The plugin must still speak every word once, drop every
interrupted sample, and keep the turns apart.
"""

from __future__ import annotations

from pipecat.frames.frames import InterruptionFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.tests.utils import SleepFrame

from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import (
    API_KEY,
    contexts_in_order,
    errors,
    heard,
    llm_turn,
    make_service,
    run,
    split_at_interruption,
)

STRICT = ServerBehaviour(
    echo_external_request_id=False,
    cancel_stops_inflight=False,
    complete_delay_ms=4000,
    complete_backoff_with_context="refuse",
    coalesce_complete=True,
    interleave_contexts=True,
    ping_supported=False,
    error_shape="flat",
    word_timestamp_voices=frozenset(),
    split_odd_bytes=True,
    ttfb_ms=150,
    chunk_ms=100,
    chunk_interval_ms=60,
)

GREETING = "Hi, thanks for calling."
FIRST = "Our kitchen opens at noon. Lunch is served until three. Dinner starts at six."
INTERRUPTED = (
    "Let me read you the whole menu. There are starters, soups and salads. "
    "Then come the pasta dishes, the fish and the grill. Finally the desserts."
)
AFTER = "Of course, go ahead."
LAST = "Your table is booked. See you tonight."


async def test_conversation_survives_the_strictest_server():
    frames = [
        TTSSpeakFrame(GREETING),
        SleepFrame(sleep=2.5),  # the caller answers
        *llm_turn(FIRST),
        SleepFrame(sleep=5.0),
        *llm_turn(INTERRUPTED),
        SleepFrame(sleep=2.0),
        InterruptionFrame(),  # the caller talks over the menu
        *llm_turn(AFTER),
        *llm_turn(LAST),  # right behind the previous reply
    ]
    behaviour = ServerBehaviour(**vars(STRICT))
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour
    ) as server:
        service = make_service(server)
        down, up = await run(service, frames)
    assert errors(up) == []
    before, after = split_at_interruption(down)
    ctx_before = contexts_in_order(before)
    ctx_after = contexts_in_order(after)
    assert len(ctx_before) == 3, "greeting, first reply, interrupted reply"
    assert heard(before, GREETING, ctx_before[0]) == GREETING.split()
    assert heard(before, FIRST, ctx_before[1]) == FIRST.split()
    cut = heard(before, INTERRUPTED, ctx_before[2])
    assert 0 < len([w for w in cut if w != "<cut>"]) < len(INTERRUPTED.split())
    stale = [f for f in after if isinstance(f, TTSAudioRawFrame) and f.context_id in ctx_before]
    assert stale == [], "audio of an earlier reply after the interruption"
    assert len(ctx_after) == 2
    assert heard(after, AFTER, ctx_after[0]) == AFTER.split()
    assert heard(after, LAST, ctx_after[1]) == LAST.split()
