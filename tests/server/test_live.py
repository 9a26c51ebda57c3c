"""The live socket over real loopback connections: protocol behaviour."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from pipecat_waves.protocol.constants import LIVE_PATH
from pipecat_waves.server import ToneBackend
from tests.server.conftest import (
    AUTH,
    KEY,
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

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

# ------------------------------------------------------------------ one-shot


async def test_one_shot_streams_backend_audio_then_one_complete(server, connect):
    client = await connect(server)
    await client.send(request("Hello world.", request_id="r1", session_id="s1"))
    frames = await client.recv_until(is_complete)
    chunks = of_status(frames, "chunk")
    assert b"".join(audio_of(f) for f in chunks) == tone("Hello world.")
    assert len(of_status(frames, "complete")) == 1
    for frame in frames:
        assert frame["session_id"].startswith("ws_")
        assert frame["request_id"].startswith("task_")
        assert "external_request_id" not in frame  # no echo by default
        assert frame["external_session_id"] == "s1"
        assert "context_id" not in frame
    [segment] = server.segments
    assert segment.text == "Hello world."
    assert segment.context_id is None
    assert segment.external_request_id == "r1"
    assert segment.request_id == frames[0]["request_id"]
    assert segment.chunks_sent == len(chunks)
    assert segment.completed and not segment.cancelled


async def test_session_id_constant_request_id_new_per_request(server, connect):
    client = await connect(server)
    await client.send(request("One."))
    await client.send(request("Two."))
    frames = await client.completes(2)
    assert len({f["session_id"] for f in frames}) == 1
    assert len({f["request_id"] for f in frames}) == 2
    assert "external_request_id" not in frames[0]  # nothing to echo


async def test_frames_without_client_ids_carry_no_external_ids(server, connect):
    client = await connect(server)
    await client.send(request("Plain."))
    frames = await client.recv_until(is_complete)
    assert all("external_session_id" not in f for f in frames)


async def test_connection_record_keeps_headers_query_and_messages(server, connect):
    client = await connect(server, query="timeout=30&x=1", headers={**AUTH, "X-Source": "tests"})
    await client.send(request("Hi."))
    await client.recv_until(is_complete)
    await client.ping_roundtrip()
    [record] = server.connections
    assert record.id == 1
    assert record.headers["x-source"] == "tests"
    assert record.query == {"timeout": "30", "x": "1"}
    assert list(record.received) == [request("Hi."), {"type": "ping"}]
    assert not record.closed
    await client.ws.close()
    await wait_until(lambda: record.closed)
    assert record.close_code == 1000


# -------------------------------------------------------------- continuations


async def test_sentence_boundaries_release_segments_each_with_one_complete(server, connect):
    client = await connect(server)
    await client.send(fragment("Hello there, ", request_id="a"))
    await client.send(fragment("my friend. ", request_id="b"))
    await client.send(fragment("How are ", request_id="c"))
    await client.send(fragment("you?", more=False, request_id="d"))
    frames = await client.completes(2)
    completes = of_status(frames, "complete")
    assert [sent_as(server, c) for c in completes] == ["b", "d"]
    assert [s.text for s in server.segments] == ["Hello there, my friend. ", "How are you?"]
    assert completes[0]["request_id"] != completes[1]["request_id"]
    first = [f for f in frames if f["request_id"] == completes[0]["request_id"]]
    assert b"".join(audio_of(f) for f in of_status(first, "chunk")) == tone(
        "Hello there, my friend. "
    )
    # Nothing else is owed: the next frame answers a ping.
    assert await client.ping_roundtrip() == [{"type": "pong"}]


async def test_continue_false_releases_fragments_joined_as_sent(server, connect):
    client = await connect(server)
    for text in ["no ", "sentence", " end ", "here"]:
        await client.send(fragment(text))
    await client.send(fragment("", more=False))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["no sentence end here"]


async def test_buffer_delay_releases_without_close(server, connect):
    client = await connect(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.send(fragment("waiting for more", max_buffer_delay_ms=200))
    await client.send(fragment(" words", max_buffer_delay_ms=200))
    await client.recv_until(is_complete)
    assert loop.time() - started >= 0.19
    assert [s.text for s in server.segments] == ["waiting for more words"]


async def test_delay_zero_releases_each_fragment(server, connect):
    client = await connect(server)
    await client.send(fragment("one", max_buffer_delay_ms=0))
    await client.send(fragment(" two", max_buffer_delay_ms=0))
    await client.completes(2)
    assert [s.text for s in server.segments] == ["one", " two"]


async def test_oversize_buffer_releases_prefixes_at_word_boundaries(server, connect):
    client = await connect(server)
    text = "word " * 50  # 250 characters, the client's limit, and no sentence end
    await client.send(fragment(text))
    await client.completes(2)
    # The default limit is stricter than the client's: one fragment, two segments.
    assert len(server.segments) == 2
    assert all(len(s.text) <= 120 and s.text.endswith(" ") for s in server.segments)
    await client.send(fragment("", more=False))
    await client.recv_until(is_complete)
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert len(server.segments) == 3
    assert "".join(s.text for s in server.segments) == text


async def test_empty_close_gets_no_reply(server, connect):
    client = await connect(server)
    await client.send(fragment("", more=False))
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert server.segments == []


async def test_close_after_sentence_release_gets_no_extra_complete(server, connect):
    client = await connect(server)
    await client.send(fragment("A complete sentence."))
    await client.recv_until(is_complete)
    await client.send(fragment("", more=False))
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert len(server.segments) == 1


async def test_contexts_buffer_independently(server, connect):
    client = await connect(server)
    await client.send(fragment("alpha", context="a"))
    await client.send(fragment("beta", context="b"))
    await client.send(fragment("", context="b", more=False))
    await client.recv_until(is_complete)
    await client.send(fragment("", context="a", more=False))
    await client.recv_until(is_complete)
    assert [(s.context_id, s.text) for s in server.segments] == [("b", "beta"), ("a", "alpha")]


async def test_close_frame_without_voice_uses_context_voice(server, connect):
    client = await connect(server)
    await client.send(fragment("held text", voice="liam"))
    await client.send({"text": "", "context_id": "ctx", "continue": False})
    frames = await client.recv_until(is_complete)
    assert of_status(frames, "error") == []
    assert [s.text for s in server.segments] == ["held text"]


async def test_segments_of_one_context_stay_in_order(server, connect):
    client = await connect(server)
    for i in range(4):
        await client.send(fragment(f"Sentence number {i}.", request_id=f"r{i}"))
    frames = await client.completes(4)
    assert [sent_as(server, c) for c in of_status(frames, "complete")] == [
        "r0",
        "r1",
        "r2",
        "r3",
    ]


async def test_legacy_buffering_without_context(server, connect):
    client = await connect(server)
    await client.send(request("Legacy one.", **{"continue": True}))
    await client.send(request(" Legacy two", **{"continue": True}))
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    await client.send(request("", flush=True, request_id="f"))
    frames = await client.recv_until(is_complete)
    assert sent_as(server, frames[-1]) == "f"
    assert [s.text for s in server.segments] == ["Legacy one. Legacy two"]


async def test_legacy_continue_false_releases(server, connect):
    client = await connect(server)
    await client.send(request("part one", **{"continue": True}))
    await client.send(request(" part two", **{"continue": False, "flush": False}))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["part one part two"]


# ------------------------------------------------------- cancel, close, socket


async def test_cancel_drops_buffered_text_and_context_stays_open(server, connect):
    client = await connect(server)
    await client.send(fragment("stale words", max_buffer_delay_ms=5000))
    await client.send({"text": "", "context_id": "ctx", "cancel_request": True})
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    await client.send(fragment("fresh", more=False))
    await client.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["fresh"]


async def test_cancel_stops_inflight_audio_when_switched_on(make_server, connect):
    server = await make_server(chunk_ms=20, chunk_interval_ms=30, cancel_stops_inflight=True)
    client = await connect(server)
    await client.send(fragment("A rather long sentence to keep audio in flight.", request_id="x"))
    first = await client.recv()
    assert first["status"] == "chunk"
    await client.send(
        {"text": "", "context_id": "ctx", "cancel_request": True, "voice_id": "avery"}
    )
    before_pong = await client.ping_roundtrip()
    assert of_status(before_pong, "complete") == []
    # Prove nothing more comes for it: a new request's frames are all its own.
    await client.send(request("Next.", request_id="y"))
    after = await client.recv_until(is_complete)
    assert {sent_as(server, f) for f in after} == {"y"}
    segment = server.segments[0]
    assert segment.cancelled and not segment.completed
    assert segment.chunks_sent < len(tone(segment.text)) // 640


async def test_cancel_by_default_drops_buffer_and_lets_released_audio_finish(make_server, connect):
    server = await make_server(chunk_ms=20, chunk_interval_ms=10)
    client = await connect(server)
    await client.send(fragment("Played to the end.", request_id="x"))
    await client.send(fragment("dropped", request_id="y"))
    frames = [await client.recv()]
    assert frames[0]["status"] == "chunk"
    await client.send({"text": "", "context_id": "ctx", "cancel_request": True})
    frames += await client.recv_until(is_complete)
    # Every sample of the released segment, then its complete.
    assert b"".join(audio_of(f) for f in of_status(frames, "chunk")) == tone("Played to the end.")
    assert sent_as(server, frames[-1]) == "x"
    # The buffered fragment is never spoken, not even when the context ends.
    await client.send(fragment("", more=False))
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert [s.text for s in server.segments] == ["Played to the end."]
    assert server.segments[0].completed and not server.segments[0].cancelled


async def test_context_close_drops_buffer_but_released_audio_finishes(make_server, connect):
    server = await make_server(chunk_ms=20, chunk_interval_ms=10)
    client = await connect(server)
    await client.send(fragment("Already released.", request_id="x"))
    await client.send(fragment("still buffered"))
    await client.send({"text": "", "context_id": "ctx", "context_close": True})
    frames = await client.recv_until(is_complete)
    assert sent_as(server, frames[-1]) == "x"
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    assert [s.text for s in server.segments] == ["Already released."]


async def test_context_close_with_nothing_buffered_gets_no_reply(server, connect):
    client = await connect(server)
    await client.send({"text": "", "context_id": "never-used", "context_close": True})
    assert await client.ping_roundtrip() == [{"type": "pong"}]


async def test_closing_socket_ends_contexts(server, connect):
    client = await connect(server)
    await client.send(fragment("buffered forever", max_buffer_delay_ms=300))
    await client.ping_roundtrip()
    await client.ws.close()
    await wait_until(lambda: server.connections[0].closed)
    # A later fragment with the same deadline, on another socket: once it is
    # released, the first one's deadline has passed too.
    later = await connect(server)
    await later.send(fragment("released by its deadline", max_buffer_delay_ms=300))
    await later.recv_until(is_complete)
    assert [s.text for s in server.segments] == ["released by its deadline"]


# ----------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("kind", ["ping", "keepalive", "keep_alive", "keep-alive"])
async def test_ping_and_aliases_get_pong_and_no_synthesis(server, connect, kind):
    client = await connect(server)
    await client.send({"type": kind})
    assert await client.recv() == {"type": "pong"}
    assert server.segments == []


async def test_unknown_message_type_is_an_error(server, connect):
    client = await connect(server)
    await client.send({"type": "hello"})
    frame = await client.recv()
    assert frame["status"] == "error"
    assert frame["error"]["code"] == "INVALID_FIELD"


# --------------------------------------------------------------- idle timeout


async def test_idle_timeout_from_query(server, connect):
    client = await connect(server, query="timeout=0.3")
    frame = await client.recv(within=3)
    assert frame == {
        "status": "error",
        "message": "Connection timed out after 0.3 seconds of inactivity",
    }
    msg = await client.ws.receive(timeout=3)
    assert msg.type == aiohttp.WSMsgType.CLOSE


async def test_idle_timeout_is_clamped_to_at_least_one_second(server, connect):
    client = await connect(server, query="timeout=0")
    loop = asyncio.get_running_loop()
    started = loop.time()
    frame = await client.recv(within=3)
    assert frame["message"] == "Connection timed out after 1 seconds of inactivity"
    assert loop.time() - started >= 0.9


async def test_any_message_resets_idle_timer(server, connect):
    client = await connect(server, query="timeout=0.4")
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Messages back to back for longer than the timeout: the socket stays open.
    while loop.time() - started < 1.0:
        assert await client.ping_roundtrip() == [{"type": "pong"}]
    frame = await client.recv(within=3)
    assert "timed out" in frame["message"]


async def test_idle_timeout_default_comes_from_behaviour(make_server, connect):
    server = await make_server(idle_timeout_s=0.3)
    client = await connect(server)
    frame = await client.recv(within=3)
    assert frame["message"] == "Connection timed out after 0.3 seconds of inactivity"


def test_timeout_query_parsing():
    from pipecat_waves.server.app import idle_timeout_from_query

    assert idle_timeout_from_query(None, 60) == 60
    assert idle_timeout_from_query("30", 60) == 30
    assert idle_timeout_from_query("999", 60) == 180
    assert idle_timeout_from_query("0", 60) == 1
    assert idle_timeout_from_query("-3", 60) == 1
    assert idle_timeout_from_query("0.25", 60) == 0.25
    assert idle_timeout_from_query("0.001", 60) == 0.05
    assert idle_timeout_from_query("500.5", 60) == 180
    assert idle_timeout_from_query("abc", 60) == 60
    assert idle_timeout_from_query("nan", 60) == 60


# ----------------------------------------------------------------------- auth


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
async def test_bad_key_is_refused_with_401_before_upgrade(server, http, headers):
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(server.ws_base_url + LIVE_PATH, headers=headers)
    assert info.value.status == 401
    async with http.get(server.base_url + LIVE_PATH, headers=headers) as response:
        assert response.status == 401
        assert KEY not in await response.text()
    assert server.connections == []


async def test_server_without_key_accepts_anyone(http):
    from pipecat_waves.server import LocalWavesServer, ToneBackend

    async with LocalWavesServer(api_key=None, backend=ToneBackend()) as server:
        ws = await http.ws_connect(server.ws_base_url + LIVE_PATH)
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=5)) == {"type": "pong"}
        await ws.close()


# ----------------------------------------------------------------- validation


async def test_validation_error_carries_envelope_nested(make_server, connect):
    server = await make_server(echo_external_request_id=True)
    client = await connect(server)
    await client.send(request("Hi.", sample_rate=12345, request_id="bad", session_id="s"))
    frame = await client.recv()
    assert frame["status"] == "error"
    assert frame["error"]["code"] == "INVALID_FIELD"
    assert "sample_rate" in frame["error"]["message"]
    assert frame["external_request_id"] == "bad"
    assert frame["external_session_id"] == "s"
    assert frame["session_id"].startswith("ws_")
    await client.send(request("Still works."))
    assert of_status(await client.recv_until(is_complete), "chunk")


async def test_validation_error_flat_shape(make_server, connect):
    server = await make_server(error_shape="flat", echo_external_request_id=True)
    client = await connect(server)
    await client.send(request("Hi.", speed=9, request_id="bad"))
    frame = await client.recv()
    assert frame["status"] == "error"
    assert "error" not in frame
    assert "speed" in frame["message"]
    assert frame["external_request_id"] == "bad"


async def test_flush_with_context_is_refused(server, connect):
    client = await connect(server)
    await client.send(fragment("x", flush=True))
    frame = await client.recv()
    assert frame["error"]["code"] == "INVALID_FIELD"
    assert "flush" in frame["error"]["message"]


async def test_unknown_voice_is_invalid_voice(make_server, connect):
    server = await make_server(echo_external_request_id=True)
    client = await connect(server)
    await client.send(request("Hi.", voice="nobody_here", request_id="v"))
    frame = await client.recv()
    assert frame["error"]["code"] == "INVALID_VOICE"
    assert "nobody_here" in frame["error"]["message"]
    assert frame["external_request_id"] == "v"
    assert server.segments == []


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", "INVALID_JSON"),
        ('["a", "list"]', "INVALID_MESSAGE"),
        ('{"text": 5, "voice_id": "avery"}', "INVALID_FIELD"),
        ('{"voice_id": "avery"}', "MISSING_FIELD"),
        ("x" * (65 * 1024), "MESSAGE_TOO_LARGE"),
    ],
)
async def test_bad_text_frames_get_errors_and_connection_survives(server, connect, payload, code):
    client = await connect(server)
    other = await connect(server)
    await client.ws.send_str(payload)
    frame = await client.recv()
    assert frame["status"] == "error"
    assert frame["error"]["code"] == code
    await client.send(request("Alive."))
    await other.send(request("Also alive."))
    assert of_status(await client.recv_until(is_complete), "chunk")
    assert of_status(await other.recv_until(is_complete), "chunk")


async def test_binary_frame_gets_error_and_connection_survives(server, connect):
    client = await connect(server)
    await client.ws.send_bytes(b"\x00\x01binary")
    frame = await client.recv()
    assert frame["error"]["code"] == "INVALID_MESSAGE"
    assert "binary" in frame["error"]["message"]
    assert await client.ping_roundtrip() == [{"type": "pong"}]


# ----------------------------------------------------------- word timestamps


async def test_word_timestamps_verbatim_and_relative_to_segment(server, connect):
    client = await connect(server)
    await client.send(fragment("It costs $100. ", word_timestamps=True))
    await client.send(fragment("Then more words.", word_timestamps=True))
    frames = await client.completes(2)
    words = of_status(frames, "word_timestamp")
    assert [w["data"]["word"] for w in words] == ["It", "costs", "$100.", "Then", "more", "words."]
    seg_ids = [f["request_id"] for f in of_status(frames, "complete")]
    second = [w for w in words if w["request_id"] == seg_ids[1]]
    # Times restart with each segment: they match the backend's own spans for it.
    spans = ToneBackend().synthesize(
        "Then more words.", voice_id="avery", speed=1.0, sample_rate=RATE
    )
    assert [(w["data"]["start"], w["data"]["end"]) for w in second] == [
        (round(s.start, 3), round(s.end, 3)) for s in spans.words
    ]
    assert second[0]["data"]["start"] < words[2]["data"]["start"]
    assert [w["data"]["id"] for w in second] == [0, 1, 2]
    assert all(w["data"]["end"] > w["data"]["start"] for w in words)
    # Each word's frame follows the chunk that completes its audio.
    first_seg = [f for f in frames if f["request_id"] == seg_ids[0]]
    assert first_seg[0]["status"] == "chunk"


async def test_no_word_timestamps_unless_requested(server, connect):
    client = await connect(server)
    await client.send(request("No timing please."))
    frames = await client.recv_until(is_complete)
    assert of_status(frames, "word_timestamp") == []


async def test_word_timestamp_voices_switch(make_server, connect):
    server = await make_server(word_timestamp_voices=frozenset({"meher"}))
    client = await connect(server)
    await client.send(request("Avery stays quiet.", word_timestamps=True))
    await client.send(request("Meher speaks up.", voice="meher", word_timestamps=True))
    frames = await client.completes(2)
    words = of_status(frames, "word_timestamp")
    assert [w["data"]["word"] for w in words] == ["Meher", "speaks", "up."]


# ------------------------------------------------------------- interleaving


async def _two_contexts(server, connect) -> list[str]:
    client = await connect(server)
    await client.send(fragment("First context speaks at length.", context="a", request_id="a"))
    await client.send(fragment("Second context speaks at length.", context="b", request_id="b"))
    frames = await client.completes(2)
    return [sent_as(server, f) for f in of_status(frames, "chunk")]


async def test_contexts_are_serial_by_default(make_server, connect):
    server = await make_server(chunk_ms=20, chunk_interval_ms=2)
    order = await _two_contexts(server, connect)
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert order[0] == "a" and switches == 1


async def test_contexts_interleave_when_enabled(make_server, connect):
    server = await make_server(chunk_ms=20, chunk_interval_ms=2, interleave_contexts=True)
    order = await _two_contexts(server, connect)
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert switches > 2
    assert set(order) == {"a", "b"}


async def test_interleave_keeps_order_within_a_context(make_server, connect):
    server = await make_server(chunk_ms=20, interleave_contexts=True)
    client = await connect(server)
    await client.send(fragment("First sentence here.", request_id="1"))
    await client.send(fragment("Second sentence here.", request_id="2"))
    frames = await client.completes(2)
    ids = [sent_as(server, f) for f in of_status(frames, "chunk")]
    assert ids == sorted(ids)


# ------------------------------------------------------------------ lifecycle


async def test_stop_closes_open_sockets(make_server, connect):
    server = await make_server()
    client = await connect(server)
    await client.ping_roundtrip()
    await server.stop()
    msg = await client.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert server.connections[0].closed


async def test_many_connections_served_concurrently(server, connect):
    clients = [await connect(server) for _ in range(5)]
    for i, client in enumerate(clients):
        await client.send(request(f"Client {i} talking.", request_id=f"c{i}"))
    results = await asyncio.gather(*(c.recv_until(is_complete) for c in clients))
    for i, frames in enumerate(results):
        assert {sent_as(server, f) for f in frames} == {f"c{i}"}
    assert [c.id for c in server.connections] == [1, 2, 3, 4, 5]


async def test_rate_in_request_sets_audio_rate(server, connect):
    client = await connect(server)
    await client.send(request("Rate check.", sample_rate=8000))
    frames = await client.recv_until(is_complete)
    audio = b"".join(audio_of(f) for f in of_status(frames, "chunk"))
    assert len(audio) == len(tone("Rate check.")) // 2
    assert RATE == 16000
