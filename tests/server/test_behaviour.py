"""Every ServerBehaviour switch, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from pipecat_waves.protocol.constants import LIVE_PATH
from tests.server.conftest import (
    AUTH,
    RATE,
    audio_of,
    fragment,
    is_complete,
    of_status,
    request,
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


async def test_echo_external_request_id_off(make_server, connect):
    server = await make_server(echo_external_request_id=False)
    client = await connect(server)
    await client.send(
        request("No echo.", request_id="mine", session_id="sess", word_timestamps=True)
    )
    frames = await client.recv_until(is_complete)
    assert {f["status"] for f in frames} == {"chunk", "word_timestamp", "complete"}
    assert all("external_request_id" not in f for f in frames)
    assert all(f["external_session_id"] == "sess" for f in frames)
    assert server.segments[0].external_request_id == "mine"


async def test_echo_switch_can_flip_between_turns(server, connect):
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
    assert [c["external_request_id"] for c in completes] == ["1", "2"]
    first_complete = frames.index(completes[0])
    second_chunk = next(
        i
        for i, f in enumerate(frames)
        if f["status"] == "chunk" and f["external_request_id"] == "2"
    )
    assert second_chunk < first_complete
    assert all(s.completed for s in server.segments)


async def test_coalesce_complete_sends_one_complete_for_both(make_server, connect):
    server = await make_server(complete_delay_ms=300, coalesce_complete=True)
    client = await connect(server)
    await client.send(fragment("First sentence.", request_id="1"))
    await client.send(fragment("Second sentence.", request_id="2"))
    frames = await client.recv_until(is_complete)
    assert [f["external_request_id"] for f in of_status(frames, "complete")] == ["2"]
    assert {f["external_request_id"] for f in of_status(frames, "chunk")} == {"1", "2"}
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
    server = await make_server(error_on_request=2)
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


# ------------------------------------------------- strict-reading switches


async def test_max_active_contexts_refuses_a_new_context_with_an_error_frame(make_server, connect):
    server = await make_server(max_active_contexts=1)
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
