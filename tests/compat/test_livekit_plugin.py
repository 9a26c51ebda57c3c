"""LiveKit's ``livekit-plugins-smallestai`` 1.8.9 against the local server.

HTTP synthesis, streaming in both of its protocols (continuations, its
default, and the legacy ``continue``/``flush`` one), barge-in and errors, each
judged from the words its audio speaks. Turns run on one plugin instance, so
its socket pool carries sockets from one turn to the next as in an agent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit.agents import APIConnectOptions, APIError, APIStatusError
from livekit.plugins.smallestai import TTS

from pipecat_waves.server.tones import words_of
from tests.compat.conftest import API_KEY, BAD_VOICE, RATE, ThreadedServer, spoken

#: No retries: a retried error would hide which attempt failed.
ONCE = APIConnectOptions(max_retry=0, timeout=10)

# Legacy turns stay under 120 characters: the plugin ends a legacy turn at the
# first ``complete``, so a turn the server splits into several segments leaves
# the rest of its ``complete`` frames to the next turn (docs/compatibility.md).
FIRST = "Our kitchen opens at noon today. Lunch is served until three."
SECOND = "Dinner starts at six and runs late into the evening."
LONG = (
    "Let me read you the whole menu slowly. There are starters, soups and salads. "
    "Then come pasta dishes, fish and grill plates. Finally desserts and coffee. "
    "Every dish can be made without nuts on request."
)
AFTER = "Sure, go ahead with your question."
TURNS = {FIRST, SECOND}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def plugin(waves: ThreadedServer, http: aiohttp.ClientSession, **kwargs) -> TTS:
    """The plugin pointed at the local server (its documented base and socket URLs)."""
    kwargs.setdefault("voice_id", "avery")
    return TTS(
        api_key=API_KEY,
        sample_rate=RATE,
        http_session=http,
        base_url=waves.http_base + "/waves/v1",
        ws_url=waves.ws_live_url,
        **kwargs,
    )


async def speak(tts: TTS, text: str) -> bytes:
    """One streamed turn, token by token as an LLM would send it; its audio."""
    stream = tts.stream(conn_options=ONCE)
    for word in text.split(" "):
        stream.push_text(word + " ")
    stream.end_input()
    try:
        return b"".join([bytes(event.frame.data) async for event in stream])
    finally:
        await stream.aclose()


async def barge_in(tts: TTS, text: str) -> bytes:
    """A turn closed mid-reply, once its first audio arrived (the user spoke)."""
    stream = tts.stream(conn_options=ONCE)
    for word in text.split(" "):
        stream.push_text(word + " ")
    stream.flush()
    heard = b""
    async for event in stream:
        heard += bytes(event.frame.data)
        break
    await stream.aclose()
    return heard


async def test_synthesize_speaks_the_whole_text(waves: ThreadedServer, http):
    tts = plugin(waves, http)
    try:
        frames = [bytes(e.frame.data) async for e in tts.synthesize(FIRST, conn_options=ONCE)]
    finally:
        await tts.aclose()

    assert spoken(b"".join(frames), FIRST) == words_of(FIRST)


@pytest.mark.parametrize("continuations", [True, False], ids=["continuations", "legacy"])
async def test_stream_speaks_each_turn_whole(waves: ThreadedServer, http, continuations):
    tts = plugin(waves, http, use_continuations=continuations)
    released_before = len(waves.server.segments)
    try:
        first = await speak(tts, FIRST)
        second = await speak(tts, SECOND)
    finally:
        await tts.aclose()

    assert spoken(first, FIRST, also=SECOND) == words_of(FIRST)
    assert spoken(second, SECOND, also=FIRST) == words_of(SECOND)
    if not continuations:
        # A legacy turn ends on its ``complete`` and hands its socket to the
        # next one, so anything left over from the first turn would be heard.
        ours = [s for s in waves.server.segments[released_before:] if s.text.strip() in TURNS]
        assert len({s.connection_id for s in ours}) == 1, ours


@pytest.mark.parametrize("continuations", [True, False], ids=["continuations", "legacy"])
async def test_turn_after_barge_in_speaks_only_its_own_words(
    waves: ThreadedServer, http, continuations
):
    tts = plugin(waves, http, use_continuations=continuations)
    try:
        cut = await barge_in(tts, LONG)
        after = await speak(tts, AFTER)
    finally:
        await tts.aclose()

    assert cut, "the interrupted turn never started"
    assert spoken(after, AFTER, also=LONG) == words_of(AFTER)


async def test_stream_error_carries_the_server_message(
    waves: ThreadedServer, http, caplog: pytest.LogCaptureFixture
):
    # The plugin keeps the provider's message out of the exception (it may echo
    # user text) and logs it under ``lk.pii.provider_message`` instead.
    tts = plugin(waves, http, voice_id=BAD_VOICE)
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.smallestai"):
        try:
            with pytest.raises(APIError):
                await speak(tts, FIRST)
        finally:
            await tts.aclose()

    messages = [getattr(r, "lk.pii.provider_message", None) for r in caplog.records]
    assert any(m and BAD_VOICE in m for m in messages), messages


async def test_synthesize_error_carries_the_server_message(waves: ThreadedServer, http):
    tts = plugin(waves, http, voice_id=BAD_VOICE)
    try:
        with pytest.raises(APIStatusError) as caught:
            async for _ in tts.synthesize(FIRST, conn_options=ONCE):
                pass
    finally:
        await tts.aclose()

    assert caught.value.status_code == 400
    assert "Invalid Voice ID" in str(caught.value)
