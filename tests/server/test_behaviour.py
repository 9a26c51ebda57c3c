"""Every ServerBehaviour switch, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from pipecat_waves.protocol.constants import DOCUMENTED_COMPLETE_BACKOFF_MS, LIVE_PATH
from pipecat_waves.server import ServerBehaviour, ToneBackend
from tests.server.conftest import (
    AUTH,
    RATE,
    audio_of,
    fragment,
    is_complete,
    of_status,
    request,
    sent_as,
    tone,
    wait_until,
)

# ------------------------------------------------------------------- timing


async def test_ttfb_ms_delays_first_chunk(make_server, connect):
    server = await make_server(ttfb_ms=250)
    client = await connect(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.send(request("Hello."))
    assert (await client.recv())["status"] == "chunk"
    assert loop.time() - started >= 0.24


async def test_chunk_ms_sets_audio_per_chunk(make_server, connect):
    server = await make_server(chunk_ms=40)
    client = await connect(server)
    await client.send(request("Chunk size check."))
    chunks = of_status(await client.recv_until(is_complete), "chunk")
    sizes = [len(audio_of(f)) for f in chunks]
    assert all(size == RATE * 2 * 40 // 1000 for size in sizes[:-1])
    assert 0 < sizes[-1] <= 1280


async def test_default_chunk_is_150_ms(server, connect):
    client = await connect(server)
    await client.send(request("Default chunk size."))
    chunks = of_status(await client.recv_until(is_complete), "chunk")
    assert len(audio_of(chunks[0])) == RATE * 2 * 150 // 1000


async def test_chunk_interval_ms_paces_chunks(make_server, connect):
    server = await make_server(chunk_ms=50, chunk_interval_ms=40)
    client = await connect(server)
    loop = asyncio.get_running_loop()
    await client.send(request("Paced audio chunks."))
    first = await client.recv()
    started = loop.time()
    frames = [first, *await client.recv_until(is_complete)]
    chunks = of_status(frames, "chunk")
    assert len(chunks) >= 5
    assert loop.time() - started >= 0.04 * (len(chunks) - 1) - 0.01


async def test_handshake_delay_ms_delays_upgrade(make_server, http):
    server = await make_server(handshake_delay_ms=250)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ws = await http.ws_connect(server.ws_base_url + LIVE_PATH, headers=AUTH)
    assert loop.time() - started >= 0.24
    await ws.close()


async def test_split_odd_bytes_splits_samples_and_keeps_audio(make_server, connect):
    server = await make_server(split_odd_bytes=True, chunk_ms=20)
    client = await connect(server)
    await client.send(request("Odd sized chunks."))
    chunks = of_status(await client.recv_until(is_complete), "chunk")
    sizes = [len(audio_of(f)) for f in chunks]
    assert all(size % 2 == 1 for size in sizes[:-1])
    assert b"".join(audio_of(f) for f in chunks) == tone("Odd sized chunks.")


# ---------------------------------------------------------------- envelopes


async def test_no_echo_of_request_id_by_default(server, connect):
    client = await connect(server)
    await client.send(
        request("No echo.", request_id="mine", session_id="sess", word_timestamps=True)
    )
    frames = await client.recv_until(is_complete)
    await client.send(fragment("Continued.", request_id="frag", session_id="sess"))
    frames += await client.recv_until(is_complete)
    await client.send(request("Bad rate.", sample_rate=1, request_id="bad", session_id="sess"))
    frames.append(await client.recv())
    assert {f["status"] for f in frames} == {"chunk", "word_timestamp", "complete", "error"}
    assert all("external_request_id" not in f for f in frames)
    # The session id echo is not switched off.
    assert all(f["external_session_id"] == "sess" for f in frames)
    assert [s.external_request_id for s in server.segments] == ["mine", "frag"]


async def test_echo_switch_echoes_every_answer(make_server, connect):
    server = await make_server(echo_external_request_id=True)
    client = await connect(server)
    await client.send(request("Echo.", request_id="one", word_timestamps=True))
    frames = await client.recv_until(is_complete)
    assert {f["status"] for f in frames} == {"chunk", "word_timestamp", "complete"}
    assert {f["external_request_id"] for f in frames} == {"one"}
    await client.send(request("Bad rate.", sample_rate=1, request_id="bad"))
    assert (await client.recv())["external_request_id"] == "bad"


async def test_echo_switch_can_flip_between_turns(make_server, connect):
    server = await make_server(echo_external_request_id=True)
    client = await connect(server)
    await client.send(request("Echo.", request_id="one"))
    assert (await client.recv_until(is_complete))[-1]["external_request_id"] == "one"
    server.behaviour.echo_external_request_id = False
    await client.send(request("No echo.", request_id="two"))
    assert "external_request_id" not in (await client.recv_until(is_complete))[-1]


# ---------------------------------------------------------------- completes


async def test_complete_delay_lets_next_segment_start_first(make_server, connect):
    server = await make_server(complete_delay_ms=300)
    client = await connect(server)
    await client.send(fragment("First sentence.", request_id="1"))
    await client.send(fragment("Second sentence.", request_id="2"))
    frames = await client.completes(2)
    completes = of_status(frames, "complete")
    assert [sent_as(server, c) for c in completes] == ["1", "2"]
    first_complete = frames.index(completes[0])
    second_chunk = next(
        i for i, f in enumerate(frames) if f["status"] == "chunk" and sent_as(server, f) == "2"
    )
    assert second_chunk < first_complete
    assert all(s.completed for s in server.segments)


async def test_complete_backoff_ms_of_a_request_delays_its_complete(make_server, connect):
    server = await make_server()  # completes at once unless a request asks otherwise
    client = await connect(server)
    # Sent as a float, the way the official SDK types it.
    await client.send(fragment("First sentence.", request_id="1", complete_backoff_ms=300.0))
    await client.send(fragment("Second sentence.", request_id="2", complete_backoff_ms=0))
    frames = await client.completes(2)
    order = [(f["status"], sent_as(server, f)) for f in frames if f["status"] != "word_timestamp"]
    assert order.index(("chunk", "2")) < order.index(("complete", "1")), "held back 300 ms"


async def test_complete_backoff_ms_zero_overrides_a_delaying_server(make_server, connect):
    server = await make_server(complete_delay_ms=300)
    client = await connect(server)
    await client.send(fragment("First sentence.", request_id="1", complete_backoff_ms=0))
    await client.send(fragment("Second sentence.", request_id="2", complete_backoff_ms=0))
    frames = await client.completes(2)
    order = [(f["status"], sent_as(server, f)) for f in frames if f["status"] != "word_timestamp"]
    assert order.index(("complete", "1")) < order.index(("chunk", "2"))


def test_documented_complete_backoff_is_the_default() -> None:
    # A client that omits complete_backoff_ms gets its completes 4 s late.
    assert ServerBehaviour().complete_delay_ms == DOCUMENTED_COMPLETE_BACKOFF_MS == 4000


async def test_complete_backoff_ms_can_be_ignored_with_a_context(make_server, connect):
    server = await make_server(complete_delay_ms=300, complete_backoff_with_context="ignore")
    client = await connect(server)
    await client.send(fragment("First sentence.", request_id="1", complete_backoff_ms=0))
    await client.send(fragment("Second sentence.", request_id="2", complete_backoff_ms=0))
    frames = await client.completes(2)
    order = [(f["status"], sent_as(server, f)) for f in frames if f["status"] != "word_timestamp"]
    assert order.index(("chunk", "2")) < order.index(("complete", "1")), "held back anyway"


async def test_complete_backoff_ms_can_be_refused_with_a_context(make_server, connect):
    server = await make_server(complete_backoff_with_context="refuse")
    client = await connect(server)
    await client.send(fragment("Refused.", request_id="1", complete_backoff_ms=0))
    error = await client.recv()
    assert error["status"] == "error"
    assert "complete_backoff_ms" in error["message"]
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert server.segments == []
    # Without a context the field stays legal.
    await client.send(request("Accepted.", complete_backoff_ms=0))
    frames = await client.recv_until(is_complete)
    assert of_status(frames, "chunk")


def test_documented_flat_error_shape_is_the_default() -> None:
    assert ServerBehaviour().error_shape == "flat"


@pytest.mark.parametrize(
    ("shape", "has_message", "has_nested"),
    [("flat", True, False), ("nested", False, True), ("both", True, True)],
)
async def test_error_shape_switch(make_server, connect, shape, has_message, has_nested):
    server = await make_server(error_shape=shape)
    client = await connect(server)
    await client.send({"text": "No voice."})
    frame = await client.recv()
    assert frame["status"] == "error"
    assert ("message" in frame) is has_message
    assert ("error" in frame) is has_nested
    if has_message:
        assert "voice_id" in frame["message"]
    if has_nested:
        assert frame["error"]["code"] == "MISSING_FIELD"


async def test_max_buffer_flush_ms_zero_means_no_timed_flush(make_server, connect):
    server = await make_server()
    client = await connect(server)
    await client.send(request("Hello ", **{"continue": True}, max_buffer_flush_ms=0))
    assert await client.ping_roundtrip() == [{"type": "pong"}], "nothing released yet"
    await client.send(request("there.", flush=True))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["Hello there."]


async def test_coalesce_complete_sends_one_complete_for_both(make_server, connect):
    server = await make_server(complete_delay_ms=300, coalesce_complete=True)
    client = await connect(server)
    await client.send(fragment("First sentence.", request_id="1"))
    await client.send(fragment("Second sentence.", request_id="2"))
    frames = await client.recv_until(is_complete)
    assert [sent_as(server, f) for f in of_status(frames, "complete")] == ["2"]
    assert {sent_as(server, f) for f in of_status(frames, "chunk")} == {"1", "2"}
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    first, second = server.segments
    assert first.coalesced and not first.completed
    assert second.completed and not second.coalesced


async def test_delayed_complete_without_following_segment_is_sent(make_server, connect):
    server = await make_server(complete_delay_ms=150, coalesce_complete=True)
    client = await connect(server)
    await client.send(request("Alone."))
    frames = await client.recv_until(is_complete)
    assert len(of_status(frames, "complete")) == 1


async def test_close_after_one_shot_complete(make_server, connect):
    server = await make_server(close_after_one_shot_complete=True)
    client = await connect(server)
    await client.send(request("Goodbye."))
    await client.recv_until(is_complete)
    msg = await client.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 1000
    await wait_until(lambda: server.connections[0].closed)


async def test_continuations_do_not_close_even_with_close_after_one_shot(make_server, connect):
    server = await make_server(close_after_one_shot_complete=True)
    client = await connect(server)
    await client.send(fragment("Context speech.", more=False))
    await client.recv_until(is_complete)
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert not server.connections[0].closed


# ------------------------------------------------------------------- faults


async def test_drop_after_chunks_aborts_once(make_server, connect):
    server = await make_server(drop_after_chunks=2, chunk_ms=20)
    client = await connect(server)
    await client.send(request("This will be cut off."))
    received = []
    while True:
        msg = await client.ws.receive(timeout=5)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        received.append(msg.json())
    # No close frame: the transport just went away.
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert of_status(received, "complete") == []
    assert len(received) <= 2
    await wait_until(lambda: server.connections[0].closed)
    assert server.segments[0].chunks_sent == 2
    # A reconnect is served in full.
    again = await connect(server)
    await again.send(request("This will be cut off."))
    chunks = of_status(await again.recv_until(is_complete), "chunk")
    assert b"".join(audio_of(f) for f in chunks) == tone("This will be cut off.")


async def test_stall_after_chunks_goes_silent_without_closing(make_server, connect):
    server = await make_server(stall_after_chunks=2, chunk_ms=20)
    client = await connect(server)
    await client.send(request("This will stall midway."))
    assert (await client.recv())["status"] == "chunk"
    assert (await client.recv())["status"] == "chunk"
    await client.send({"type": "ping"})
    with pytest.raises(TimeoutError):
        await client.ws.receive(timeout=0.5)
    assert not client.ws.closed
    assert server.connections[0].received[-1] == {"type": "ping"}
    assert not server.connections[0].closed
    # Once per server: a new connection is served normally.
    other = await connect(server)
    await other.send(request("Fine."))
    assert of_status(await other.recv_until(is_complete), "complete")
    assert await other.ping_roundtrip() == [{"type": "pong"}]


async def test_error_on_request_counts_across_the_server(make_server, connect):
    # The echo tells which request the error answers.
    server = await make_server(error_on_request=2, echo_external_request_id=True)
    first = await connect(server)
    second = await connect(server)
    await first.send({"type": "ping"})  # not synthesis-bearing: not counted
    await first.recv()
    await first.send(request("One.", request_id="1"))
    assert of_status(await first.recv_until(is_complete), "complete")
    await second.send(request("Two.", request_id="2"))
    frame = await second.recv()
    assert frame["status"] == "error"
    assert frame["external_request_id"] == "2"
    await second.send(request("Three.", request_id="3"))
    assert (await second.recv_until(is_complete))[-1]["external_request_id"] == "3"
    assert [s.text for s in server.segments] == ["One.", "Three."]


async def test_error_on_request_drops_the_context_buffer(make_server, connect):
    server = await make_server(error_on_request=2)
    client = await connect(server)
    await client.send(fragment("held "))
    await client.send(fragment("fails", more=False))
    assert (await client.recv())["status"] == "error"
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert server.segments == []


async def test_max_connections_close_1008(make_server, connect, http):
    server = await make_server(max_connections=1)
    first = await connect(server)
    ws = await http.ws_connect(server.ws_base_url + LIVE_PATH, headers=AUTH)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 1008
    assert "concurrent" in msg.extra.lower()
    assert len(server.connections) == 1
    assert server.rejected_connections == 1
    # The admitted socket is unaffected, and its slot frees on close.
    assert await first.ping_roundtrip() == [{"type": "pong"}]
    await first.ws.close()
    await wait_until(lambda: server.connections[0].closed)
    third = await connect(server)
    assert await third.ping_roundtrip() == [{"type": "pong"}]
    assert len(server.connections) == 2


async def test_max_connections_http_429(make_server, connect, http):
    server = await make_server(max_connections=1, reject_with="http_429")
    first = await connect(server)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(server.ws_base_url + LIVE_PATH, headers=AUTH)
    assert info.value.status == 429
    assert info.value.headers is not None and info.value.headers["Retry-After"] == "1"
    body = {"text": "Hi.", "voice_id": "avery"}
    async with http.post(server.base_url + LIVE_PATH, json=body, headers=AUTH) as response:
        assert response.status == 429
    assert len(server.connections) == 1
    assert await first.ping_roundtrip() == [{"type": "pong"}]


# -------------------------------------------------------- buffering switches


async def test_min_sentence_chars_switch(make_server, connect):
    server = await make_server(min_sentence_chars=3)
    client = await connect(server)
    await client.send(fragment("Hi."))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["Hi."]


async def test_default_min_sentence_chars_holds_short_sentence(server, connect):
    client = await connect(server)
    await client.send(fragment("Hi."))
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert server.segments == []


async def test_max_chunk_chars_switch(make_server, connect):
    server = await make_server(max_chunk_chars=20)
    client = await connect(server)
    await client.send(fragment("aaaa bbbb cccc dddd eeee"))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["aaaa bbbb cccc dddd "]


async def test_buffer_switches_apply_between_turns_on_one_connection(server, connect):
    client = await connect(server)
    await client.send(fragment("Hi."))
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert server.segments == []
    server.behaviour.min_sentence_chars = 3
    await client.send(fragment(" Yo."))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["Hi. Yo."]


async def test_large_min_sentence_chars_merges_sentences_into_one_segment(make_server, connect):
    server = await make_server(min_sentence_chars=200)
    client = await connect(server)
    sentences = ["First one. ", "Second one here. ", "And a third."]
    for text in sentences:
        await client.send(fragment(text))
    # Three sentence ends, and not one released.
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert server.segments == []
    await client.send(fragment("", more=False))
    frames = await client.recv_until(is_complete)
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    whole = "".join(sentences)
    assert [s.text for s in server.segments] == [whole]
    assert b"".join(audio_of(f) for f in of_status(frames, "chunk")) == tone(whole)


async def test_merged_sentences_are_still_cut_by_the_size_limit(make_server, connect):
    server = await make_server(min_sentence_chars=200, max_chunk_chars=40)
    client = await connect(server)
    for text in ["One short line. ", "Two short lines. ", "Three short lines. "]:
        await client.send(fragment(text))
    await client.recv_until(is_complete)
    [merged] = server.segments
    assert merged.text == "One short line. Two short lines. Three "
    await client.send(fragment("", more=False))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments][1:] == ["short lines. "]


async def test_small_max_chunk_chars_splits_one_sentence_into_segments(make_server, connect):
    server = await make_server(max_chunk_chars=30)
    client = await connect(server)
    text = "This single sentence is much longer than thirty characters in all."
    await client.send(fragment(text, more=False, request_id="only"))
    frames = await client.completes(1)
    # Every segment of the sentence was released by that one message.
    count = len(server.segments)
    assert count >= 3
    frames += await client.completes(count - 1)
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    segments = server.segments
    assert "".join(s.text for s in segments) == text
    assert all(len(s.text) <= 30 for s in segments)
    assert len({s.request_id for s in segments}) == count
    completes = of_status(frames, "complete")
    assert [c["request_id"] for c in completes] == [s.request_id for s in segments]
    for segment in segments:
        chunks = [f for f in of_status(frames, "chunk") if f["request_id"] == segment.request_id]
        assert b"".join(audio_of(f) for f in chunks) == tone(segment.text)


async def test_buffer_delay_override_releases_a_partial_sentence(make_server, connect):
    server = await make_server(buffer_delay_override_ms=100)
    client = await connect(server)
    await client.send(fragment("Half a sen", max_buffer_delay_ms=5000))
    # Far sooner than the 5 s the client asked for.
    await client.recv_until(is_complete, within=2.0)
    assert [s.text for s in server.segments] == ["Half a sen"]
    await client.send(fragment("tence.", more=False))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["Half a sen", "tence."]


async def test_buffer_delay_override_ignores_a_shorter_client_delay(make_server, connect):
    server = await make_server(buffer_delay_override_ms=5000)
    client = await connect(server)
    # Without the override, a delay of 0 releases each fragment on its own.
    await client.send(fragment("one", max_buffer_delay_ms=0))
    await client.send(fragment(" two", max_buffer_delay_ms=0))
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert server.segments == []
    await client.send(fragment("", more=False))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["one two"]


# ---------------------------------------------------------- word timestamps


def _spans(text: str, offset: float = 0.0) -> list[float]:
    """Start and end of every word of ``text``, flattened, shifted by ``offset``."""
    synthesis = ToneBackend().synthesize(text, voice_id="avery", speed=1.0, sample_rate=RATE)
    return [t + offset for w in synthesis.words for t in (w.start, w.end)]


def _times(words: list[dict]) -> list[float]:
    return [t for w in words for t in (w["data"]["start"], w["data"]["end"])]


async def test_word_time_reference_context_continues_across_segments(make_server, connect):
    server = await make_server(word_time_reference="context")
    client = await connect(server)
    first, second = "It costs $100. ", "Then more words."
    await client.send(fragment(first, word_timestamps=True))
    await client.send(fragment(second, more=False, word_timestamps=True))
    frames = await client.completes(2)
    one, two = (
        [w for w in of_status(frames, "word_timestamp") if w["request_id"] == s.request_id]
        for s in server.segments
    )
    offset = len(tone(first)) / (2 * RATE)
    assert _times(one) == pytest.approx(_spans(first), abs=1e-3)
    assert _times(two) == pytest.approx(_spans(second, offset), abs=1e-3)
    assert two[0]["data"]["start"] > one[-1]["data"]["end"]
    # A new context under the same id, and a one-shot, start again from zero.
    await client.send(fragment(second, more=False, word_timestamps=True))
    await client.send(request(second, word_timestamps=True))
    frames = await client.completes(2)
    again = of_status(frames, "word_timestamp")
    assert _times(again) == pytest.approx(_spans(second) * 2, abs=1e-3)


async def test_word_time_reference_segment_is_the_default(server, connect):
    client = await connect(server)
    await client.send(fragment("It costs $100. ", word_timestamps=True))
    await client.send(fragment("Then more words.", more=False, word_timestamps=True))
    frames = await client.completes(2)
    expected = _spans("It costs $100. ") + _spans("Then more words.")
    assert _times(of_status(frames, "word_timestamp")) == pytest.approx(expected, abs=1e-3)


# ------------------------------------------------- strict-reading switches


async def test_max_active_contexts_refuses_a_new_context_with_an_error_frame(make_server, connect):
    server = await make_server(max_active_contexts=1, echo_external_request_id=True)
    first = await connect(server)
    second = await connect(server)
    await first.send(fragment("Holding the slot. ", context="a"))
    await second.send(fragment("Wants a slot. ", context="b", request_id="b"))
    refusal = await second.recv()
    assert refusal["status"] == "error"
    assert refusal["error"]["code"] == "CONCURRENCY_LIMIT"
    assert refusal["external_request_id"] == "b"
    # Closing the first context frees the slot for the second.
    await first.send(fragment("", context="a", more=False))
    await first.completes(1)
    await second.send(fragment("Wants a slot. ", context="b", more=False))
    frames = await second.completes(1)
    assert of_status(frames, "chunk")
    assert [s.context_id for s in server.segments] == ["a", "b"]


async def test_auth_failure_after_upgrade_sends_error_then_closes(make_server, http):
    server = await make_server(auth_failure="close_after_upgrade")
    url = server.ws_base_url + LIVE_PATH
    ws = await http.ws_connect(url, headers={"Authorization": "Bearer wrong"})
    first = await ws.receive(timeout=5)
    assert first.type == aiohttp.WSMsgType.TEXT
    assert "unauthorized" in json.loads(first.data)["message"].lower()
    closing = await ws.receive(timeout=5)
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert closing.data == 1008
    assert server.connections == []


async def test_ping_unsupported_answers_with_a_validation_error(make_server, connect):
    server = await make_server(ping_supported=False)
    client = await connect(server)
    await client.send({"type": "ping"})
    answer = await client.recv()
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "MISSING_FIELD"
    # The connection keeps working.
    await client.send(request("Hi there."))
    assert of_status(await client.completes(1), "chunk")


# ----------------------------------------------------- concurrency slots

#: About 3 s of tone audio, sent in roughly a second: long enough to act on
#: the context while its audio is still streaming.
LONG = "A rather long sentence that keeps its audio streaming for a while."
SLOW_STREAM = {"chunk_ms": 100, "chunk_interval_ms": 30}


async def _refused(client) -> None:
    await client.send(fragment("Wants a slot.", context="b"))
    refusal = await client.recv()
    assert refusal["status"] == "error"
    assert refusal["error"]["code"] == "CONCURRENCY_LIMIT"


async def test_cancelled_context_keeps_its_slot_until_the_socket_closes(make_server, connect):
    server = await make_server(max_active_contexts=1, **SLOW_STREAM)
    first = await connect(server)
    second = await connect(server)
    await first.send(fragment(LONG, context="a"))
    assert (await first.recv())["status"] == "chunk"
    await first.send({"text": "", "context_id": "a", "cancel_request": True})
    await first.ping_roundtrip()
    await _refused(second)
    # Refused while the cancelled context's released audio was still streaming.
    assert not server.segments[0].completed
    # Closing the socket frees its slot before the close handshake ends.
    await first.ws.close()
    await second.send(fragment("Wants a slot.", context="b", more=False))
    frames = await second.recv_until(is_complete)
    assert of_status(frames, "error") == []
    assert [s.context_id for s in server.segments] == ["a", "b"]
    assert not server.segments[0].completed


@pytest.mark.parametrize("end", ["continue", "context_close", "cancel_request"])
async def test_ended_context_holds_its_slot_until_its_audio_is_done(make_server, connect, end):
    server = await make_server(max_active_contexts=1, **SLOW_STREAM)
    first = await connect(server)
    second = await connect(server)
    if end == "continue":
        await first.send(fragment(LONG, context="a", more=False))
    else:
        await first.send(fragment(LONG, context="a"))
        await first.send({"text": "", "context_id": "a", end: True})
    frames = await first.ping_roundtrip()
    await _refused(second)
    # The released segment plays to its end and its complete frees the slot.
    frames += await first.recv_until(is_complete)
    assert b"".join(audio_of(f) for f in of_status(frames, "chunk")) == tone(LONG)
    await second.send(fragment("Wants a slot.", context="b", more=False))
    frames = await second.recv_until(is_complete)
    assert of_status(frames, "error") == []
    assert [s.context_id for s in server.segments] == ["a", "b"]


async def test_context_still_open_after_its_audio_keeps_its_slot(make_server, connect):
    server = await make_server(max_active_contexts=1)
    first = await connect(server)
    second = await connect(server)
    await first.send(fragment("Spoken in full.", context="a"))
    await first.recv_until(is_complete)
    # No end was sent: more text may come, so the slot stays taken.
    await _refused(second)


async def test_stopped_segments_free_the_slot_of_a_cancelled_context(make_server, connect):
    server = await make_server(max_active_contexts=1, cancel_stops_inflight=True, **SLOW_STREAM)
    first = await connect(server)
    second = await connect(server)
    await first.send(fragment(LONG, context="a"))
    assert (await first.recv())["status"] == "chunk"
    await first.send({"text": "", "context_id": "a", "cancel_request": True})
    await first.ping_roundtrip()
    await second.send(fragment("Wants a slot.", context="b", more=False))
    frames = await second.recv_until(is_complete)
    assert of_status(frames, "error") == []
    assert server.segments[0].cancelled and not server.segments[0].completed


async def test_a_client_leaving_mid_handshake_is_routine(make_server, connect, caplog):
    server = await make_server(handshake_delay_ms=50)
    upgrade = (
        f"GET {LIVE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: {AUTH['Authorization']}\r\n\r\n"
    ).encode()
    with caplog.at_level("ERROR", logger="aiohttp.server"):
        for _ in range(3):
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(upgrade)
            await writer.drain()
            writer.transport.abort()  # gone before the server answers
        # The server got to its answer to each, and found the client gone.
        await wait_until(lambda: server.abandoned_upgrades == 3)
        client = await connect(server)  # and it still serves the next client
        assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"] == []
