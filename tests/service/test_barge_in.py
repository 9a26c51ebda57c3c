"""Barge-in: after an InterruptionFrame, not one sample of the interrupted reply."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pipecat.frames.frames import (
    DataFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.tests.utils import SleepFrame

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of
from tests.service.conversation import Conversation, run_conversation
from tests.service.helpers import (
    API_KEY,
    RATE,
    contexts_in_order,
    heard,
    llm_turn,
    make_service,
    run,
    split_at_interruption,
)

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

LONG_REPLY = (
    "Let me tell you about our menu. We have seven kinds of pasta tonight. "
    "There is also a fish special with lemon and herbs. Desserts are made fresh every day. "
    "Would you like me to read out the wine list as well?"
)
NEXT_REPLY = "Sure, go ahead."

# Audio streams at about real time, so the reply is mid-way when the user speaks.
SLOW = {"chunk_ms": 100, "chunk_interval_ms": 100}

SWITCHES = {
    "echo": {"echo_external_request_id": True},
    "no-echo": {"echo_external_request_id": False},
    "echo, cancel leaves audio running": {
        "echo_external_request_id": True,
        "cancel_stops_inflight": False,
    },
    "no-echo, cancel leaves audio running": {
        "echo_external_request_id": False,
        "cancel_stops_inflight": False,
    },
    # The client asks for no hold-back; these servers hold completes back anyway.
    "no-echo, delayed complete": {
        "echo_external_request_id": False,
        "complete_delay_ms": 700,
        "complete_backoff_with_context": "ignore",
    },
    "echo, coalesced delayed complete": {
        "echo_external_request_id": True,
        "complete_delay_ms": 300,
        "coalesce_complete": True,
        "complete_backoff_with_context": "refuse",
    },
    "no-echo, interleaved contexts": {
        "echo_external_request_id": False,
        "interleave_contexts": True,
    },
}


def barge_in_frames(wait_s: float = 0.8) -> list:
    return [
        *llm_turn(LONG_REPLY),
        SleepFrame(sleep=wait_s),
        InterruptionFrame(),
        SleepFrame(sleep=0.3),
        *llm_turn(NEXT_REPLY),
    ]


@pytest.mark.parametrize("switches", list(SWITCHES.values()), ids=list(SWITCHES))
async def test_no_interrupted_audio_after_the_interruption(switches):
    behaviour = ServerBehaviour(**SLOW, **switches)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_service(server)
        down, up = await run(service, barge_in_frames())
    before, after = split_at_interruption(down)
    interrupted = contexts_in_order(before)
    assert len(interrupted) == 1, "the reply was playing when the user spoke"
    spoken_before = heard(before, LONG_REPLY)
    assert 0 < len(spoken_before) < len(LONG_REPLY.split()), "interrupted mid-way"
    stale = [f for f in after if isinstance(f, TTSAudioRawFrame) and f.context_id in interrupted]
    assert stale == [], "audio of the interrupted reply came out after the interruption"
    assert heard(after, NEXT_REPLY) == NEXT_REPLY.split(), "the next reply is spoken in full"
    assert not up
    # The server was told to drop the interrupted reply.
    received = [m for c in server.connections for m in c.received]
    assert any(m.get("cancel_request") for m in received)
    assert any(m.get("context_close") for m in received)
    # Whatever the server does with a cancel, the connection that carried the
    # interrupted reply is closed, and the next reply needs no new handshake:
    # it goes out on a spare that was warm before the barge-in.
    carriers = [
        c
        for c in server.connections
        if any(m.get("text") and LONG_REPLY.startswith(m["text"]) for m in c.received)
    ]
    assert len(carriers) == 1 and carriers[0].closed
    next_carrier = [
        c.id
        for c in server.connections
        if NEXT_REPLY in "".join(m.get("text", "") for m in c.received)
    ]
    assert next_carrier and next_carrier[0] <= 2, "the next reply used a warm connection"


async def test_next_reply_after_barge_in_uses_a_warm_socket():
    behaviour = ServerBehaviour(**SLOW, echo_external_request_id=False, handshake_delay_ms=300)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_service(server)
        frames = [
            *llm_turn(LONG_REPLY),
            SleepFrame(sleep=1.2),
            InterruptionFrame(),
            *llm_turn(NEXT_REPLY),
        ]
        down, _ = await run(service, frames)
    _, after = split_at_interruption(down)
    assert heard(after, NEXT_REPLY) == NEXT_REPLY.split()
    # The reply went out on the spare opened before the barge-in (the second
    # connection), not on one opened after it.
    carriers = [
        c.id
        for c in server.connections
        if NEXT_REPLY in "".join(m.get("text", "") for m in c.received)
    ]
    assert carriers == [server.connections[1].id]


GREETING = "Welcome back, our announcement always plays in full."


def uninterruptible(text: str) -> TTSSpeakFrame:
    frame = TTSSpeakFrame(text)
    frame.interruptible = False
    return frame


async def test_uninterruptible_speech_plays_whole_and_the_reply_behind_it_is_cut():
    behaviour = ServerBehaviour(**SLOW, echo_external_request_id=False)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_service(server)
        frames = [
            uninterruptible(GREETING),
            *llm_turn(LONG_REPLY),
            SleepFrame(sleep=0.8),
            InterruptionFrame(),
            SleepFrame(sleep=0.3),
            *llm_turn(NEXT_REPLY),
        ]
        down, up = await run(service, frames)
    # The reply queued behind the announcement was dropped before a sample of it played.
    greeting, following = contexts_in_order(down)
    assert heard(down, GREETING, greeting) == GREETING.split(), "played to the end"
    assert heard(down, NEXT_REPLY, following) == NEXT_REPLY.split()
    assert not up
    # Only the dropped reply was cancelled on the server.
    cancelled = [m for c in server.connections for m in c.received if m.get("cancel_request")]
    assert cancelled and all(GREETING not in str(m) for m in cancelled)
    greeting_carrier = [
        c
        for c in server.connections
        if any(m.get("text", "").strip() == GREETING for m in c.received)
    ]
    assert len(greeting_carrier) == 1 and not any(
        m.get("cancel_request") for m in greeting_carrier[0].received
    )


@dataclass
class UnplayedReply(DataFrame):
    """Makes the service below send a reply for which Pipecat holds no audio context."""


class WithUnplayedReply(WavesTTSService):
    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, UnplayedReply):
            async for _ in self.run_tts("Nobody will ever play this reply. ", "unplayed"):
                pass
            return
        await super().process_frame(frame, direction)


async def test_a_reply_no_audio_context_plays_is_cancelled_by_a_barge_in_too():
    # Its audio could never be heard, but left alone it would hold a connection
    # (and a server slot) that the next reply needs.
    behaviour = ServerBehaviour(**SLOW, echo_external_request_id=True)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = WithUnplayedReply(api_key=API_KEY, base_url=server.ws_base_url, sample_rate=16000)
        frames = [UnplayedReply(), SleepFrame(sleep=0.5), InterruptionFrame(), SleepFrame(0.3)]
        down, _ = await run(service, frames)
        assert not service._session.is_live("unplayed")
    assert not [f for f in down if isinstance(f, TTSAudioRawFrame)]
    received = [m for c in server.connections for m in c.received]
    assert any(m.get("cancel_request") for m in received)


async def test_text_of_the_interrupted_reply_arriving_after_the_barge_in_is_never_spoken():
    # The tail of an LLM stream can reach the service after the InterruptionFrame
    # overtook it: Pipecat gives it a context outside any turn, which no end of
    # turn closes. Spoken, it would be a piece of the reply the user talked over;
    # left open, it would hold the next reply back.
    behaviour = ServerBehaviour(**SLOW)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_service(server)
        talk = Conversation(token_gap_s=0)
        talk.say("long", LONG_REPLY, stop_after="tonight.")
        talk.wait_started(1, timeout_s=10, label="long reply started")
        talk.barge_in()
        talk.steps += [LLMTextFrame("There is also a fish special."), LLMFullResponseEndFrame()]
        talk.say("next", NEXT_REPLY)
        talk.wait_heard(
            1, then_quiet_s=0.2, timeout_s=10, label="next reply heard", since_barge_in=True
        )
        result = await run_conversation(service, talk, finish_timeout_s=5)
    assert talk.timed_out == [], "the next reply was held back"
    assert not result.unfinished
    assert result.errors == []
    after = talk.contexts_heard(since_barge_in=True)
    assert len(after) == 1
    audio = b"".join(
        e.frame.audio
        for e in result.down
        if isinstance(e.frame, TTSAudioRawFrame) and e.frame.context_id == after[0]
    )
    assert transcribe_tones(audio, RATE, words_of(NEXT_REPLY)) == NEXT_REPLY.split()
    sent = "".join(m.get("text", "") for c in server.connections for m in c.received)
    assert "fish" not in sent, "the interrupted reply's tail reached the server"
