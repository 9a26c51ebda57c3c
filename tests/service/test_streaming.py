"""Text in, audio out: streaming LLM replies through WavesTTSService."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.services.tts_service import TextAggregationMode
from pipecat.tests.utils import SleepFrame

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import (
    API_KEY,
    contexts_in_order,
    heard,
    llm_turn,
    make_service,
    run,
)

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

REPLY = "Hello there. I can help you book a table tonight. What time suits you best?"


def carried(server: LocalWavesServer) -> list[dict]:
    """Messages with text, from every connection, in the order each connection got them."""
    return [m for c in server.connections for m in c.received if "text" in m]


def tone_server(**switches) -> LocalWavesServer:
    return LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=ServerBehaviour(**switches), record=True
    )


async def test_streamed_tokens_are_spoken_in_order_over_one_socket():
    async with tone_server() as server:
        service = make_service(server)
        down, up = await run(service, llm_turn(REPLY, token_gap_s=0.01))
    assert heard(down, REPLY) == REPLY.split()
    # One reply, one connection (the other one is the warm spare).
    assert len(server.connections) == 2
    assert sum(1 for c in server.connections if any("text" in m for m in c.received)) == 1
    sent = carried(server)
    assert [m["text"] for m in sent] == [
        "Hello there. ",
        "I can help you book a table tonight. ",
        "What time suits you best? ",
        "",
    ]
    assert len({m["context_id"] for m in sent}) == 1, "one continuation per LLM turn"
    assert [m["continue"] for m in sent] == [True, True, True, False]
    assert all(m["max_buffer_delay_ms"] == 0 for m in sent), "sentences are not buffered twice"
    assert [type(f) for f in down if isinstance(f, TTSStartedFrame | TTSStoppedFrame)] == [
        TTSStartedFrame,
        TTSStoppedFrame,
    ]
    assert not up


async def test_word_frames_follow_the_audio_with_offsets_across_sentences():
    async with tone_server() as server:
        service = make_service(server, settings=WavesTTSService.Settings(voice="avery"))
        down, _ = await run(service, llm_turn(REPLY))
    words = [f for f in down if isinstance(f, TTSTextFrame)]
    assert " ".join(f.text for f in words).split() == REPLY.split()
    pts = [f.pts for f in words]
    assert all(p is not None for p in pts)
    assert pts == sorted(pts), "word times run forward across the three segments"
    # The first word of the third sentence comes after all audio of the first two.
    third = REPLY.split().index("What")
    assert pts[third] > pts[third - 1]


async def test_voice_without_timestamps_falls_back_to_whole_text():
    async with tone_server(word_timestamp_voices=frozenset({"avery"})) as server:
        service = make_service(server, settings=WavesTTSService.Settings(voice="sophia"))
        down, _ = await run(service, llm_turn(REPLY))
    text = " ".join(f.text for f in down if isinstance(f, TTSTextFrame))
    assert text.split() == REPLY.split()


async def test_token_mode_streams_tokens_and_lets_the_server_gather_them():
    async with tone_server() as server:
        service = make_service(server, text_aggregation_mode=TextAggregationMode.TOKEN)
        down, _ = await run(service, llm_turn(REPLY, token_gap_s=0.005))
    assert heard(down, REPLY) == REPLY.split()
    sent = carried(server)
    assert len(sent) > 4, "tokens go out as they come"
    assert all(m["max_buffer_delay_ms"] == 500 for m in sent)
    assert "".join(m["text"] for m in sent) == REPLY


async def test_back_to_back_replies_each_get_their_own_context_and_play_in_order():
    first, second = "Short one.", "And here is the second reply, right after."
    async with tone_server() as server:
        service = make_service(server)
        down, _ = await run(service, llm_turn(first) + llm_turn(second))
    ctx = contexts_in_order(down)
    assert len(ctx) == 2
    assert heard(down, first + " " + second, ctx[0]) == first.split()
    assert heard(down, second + " " + first, ctx[1]) == second.split()
    kinds = [type(f) for f in down if isinstance(f, TTSStartedFrame | TTSStoppedFrame)]
    assert kinds == [TTSStartedFrame, TTSStoppedFrame, TTSStartedFrame, TTSStoppedFrame]
    # The second reply is prepared on the warm spare while the first plays; no
    # connection is opened per reply.
    assert len(server.connections) <= 3


async def test_speak_frame_is_a_context_of_its_own():
    async with tone_server() as server:
        service = make_service(server)
        down, _ = await run(service, [TTSSpeakFrame("Welcome back!"), *llm_turn(REPLY)])
    ctx = contexts_in_order(down)
    assert len(ctx) == 2
    assert heard(down, "Welcome back!", ctx[0]) == ["Welcome", "back!"]
    assert heard(down, REPLY, ctx[1]) == REPLY.split()


async def test_settings_change_between_turns_needs_no_reconnect():
    async with tone_server() as server:
        service = make_service(server)
        update = TTSUpdateSettingsFrame(
            delta=WavesTTSService.Settings(voice="liam", speed=1.5, language="es")
        )
        _down, _ = await run(service, [*llm_turn("Uno."), update, *llm_turn("Dos.")])
    # No reconnect: the two warm connections, plus a new spare when the second
    # reply took the first spare while the first reply was still playing.
    assert len(server.connections) <= 3
    assert all(not c.closed or c.close_code == 1000 for c in server.connections)
    sent = [m for m in carried(server) if m.get("text")]
    assert [(m["voice_id"], m.get("speed"), m["language"]) for m in sent] == [
        ("avery", None, "en"),
        ("liam", 1.5, "es"),
    ]


async def test_voice_change_mid_turn_starts_a_new_server_context():
    async with tone_server() as server:
        service = make_service(server)
        frames = llm_turn("First sentence here. Second sentence here.", token_gap_s=0.01)
        update = TTSUpdateSettingsFrame(delta=WavesTTSService.Settings(voice="liam"))
        # After "Second " arrives the aggregator has released the first sentence.
        frames.insert(9, SleepFrame(0.2))
        frames.insert(10, update)
        down, _ = await run(service, frames)
    sent = [m for m in carried(server) if m.get("text")]
    assert [m["voice_id"] for m in sent] == ["avery", "liam"]
    assert sent[0]["context_id"] != sent[1]["context_id"]
    assert heard(down, "First sentence here. Second sentence here.") == [
        "First",
        "sentence",
        "here.",
        "Second",
        "sentence",
        "here.",
    ]
